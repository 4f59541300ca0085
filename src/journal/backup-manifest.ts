import { createHmac, timingSafeEqual } from 'node:crypto';
import { RecoveryError } from '../errors.js';

/**
 * A full backup: one part per tenant (its rows of every journaled table, sealed under its own data
 * key) and one for the system's rows (sealed under the backup's system key), all consistent at one
 * journal sequence. The manifest, written last, lists each part's digest and row counts and is
 * MAC'd under the backup's system key: a backup without a manifest is unfinished and never used.
 */
export interface BackupPart {
  /** `system` or a tenant id. */
  name: string;
  object: string;
  /** The tenant data key the part is sealed under, wrapped by the tenant's KEK (base64); null for the system part. */
  keyId: number | null;
  wrappedKey: string | null;
  bytes: number;
  sha256: string;
  rows: Record<string, number>;
}

export interface BackupManifest {
  format: 1;
  backupId: string;
  timeline: string;
  /** Every entry up to this sequence is in the backup, and none after it. */
  seq: number;
  /** When the snapshot was taken (no entry after `seq` committed before it). */
  takenAt: number;
  finishedAt: number;
  /** The last schema migration of the database it was taken from. */
  schema: string;
  wrappedKey: string;
  parts: BackupPart[];
  mac: string;
}

export const SYSTEM_PART = 'system';
export const backupPrefix = (timeline: string) => `backups/${timeline}/`;
export const backupObject = (timeline: string, backupId: string, name: string) => `backups/${timeline}/${backupId}/${name}`;
export const manifestObject = (timeline: string, backupId: string) => backupObject(timeline, backupId, 'manifest');
/** Backup ids sort by sequence. */
export const backupIdFor = (seq: number, random: string) => `${String(seq).padStart(16, '0')}-${random}`;

const macOf = (macKey: Buffer, manifest: Omit<BackupManifest, 'mac'>) => createHmac('sha256', macKey).update(JSON.stringify(manifest)).digest('hex');

export function signManifest(manifest: Omit<BackupManifest, 'mac'>, macKey: Buffer): BackupManifest {
  return { ...manifest, mac: macOf(macKey, manifest) };
}

export function parseManifest(bytes: Buffer, name: string): BackupManifest {
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(bytes.toString('utf8')) as BackupManifest;
  } catch {
    throw new RecoveryError(`backup manifest ${name}: unreadable`);
  }
  if (manifest.format !== 1 || !Array.isArray(manifest.parts) || typeof manifest.wrappedKey !== 'string') {
    throw new RecoveryError(`backup manifest ${name}: unknown format`);
  }
  return manifest;
}

export function verifyManifestMac(manifest: BackupManifest, macKey: Buffer, name: string): void {
  const { mac, ...unsigned } = manifest;
  const expected = Buffer.from(macOf(macKey, unsigned), 'hex');
  const given = Buffer.from(typeof mac === 'string' ? mac : '', 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new RecoveryError(`backup manifest ${name}: fails its MAC (tampered with, or not this deployment's)`);
}
