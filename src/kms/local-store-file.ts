import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError, IntegrityError } from '../errors.js';
import { errorCode } from './file-lock.js';
import { KEY_NAME } from './key-name.js';
import { isVersionNumber, parseVersionRecord, type KeyRecord, type VersionRecord } from './version-lifecycle.js';

/*
 * The local KMS key store file, 0600:
 *   { "format": 1, "keys": { "<name>": { "primary": n, "versions": [
 *       { "version": n, "state": "enabled", "createdAt": iso, "material": base64 } ] } } }
 * `material` is the key-encryption key sealed under the master key (see local.ts). A version
 * scheduled for destruction also holds `destroyAt` and `stateBefore`; a destroyed one has no material.
 */

export interface StoredKeyVersion extends VersionRecord {
  /** Absent once destroyed. */
  material?: string;
}

export type StoredKey = KeyRecord<StoredKeyVersion>;

export interface KeyStoreSnapshot {
  keys: Map<string, StoredKey>;
  /** Which file version this is (device, inode, mtime, size); null when there is no file yet. */
  identity: string | null;
}

/** Reads the store; a missing file is an empty store. Refuses a file that group or others can read. */
export async function readKeyStoreFile(file: string): Promise<KeyStoreSnapshot> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      return { keys: new Map(), identity: null };
    }
    throw error;
  }
  try {
    const stats = await handle.stat({ bigint: true });
    if (!stats.isFile()) {
      throw new ConfigError('kms.local.keyStoreFile', `${file} is not a regular file`);
    }
    assertPrivateMode(file, Number(stats.mode), 'kms.local.keyStoreFile');
    const text = await handle.readFile('utf8');
    return { keys: parseKeyStore(file, text), identity: identityOf(stats) };
  } finally {
    await handle.close();
  }
}

/** The identity of the file now on disk, to tell whether another process has rewritten it. */
export async function keyStoreFileIdentity(file: string): Promise<string | null> {
  try {
    const handle = await open(file, 'r');
    try {
      return identityOf(await handle.stat({ bigint: true }));
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      return null;
    }
    throw error;
  }
}

/**
 * Replaces the store atomically: a 0600 temporary file is written and fsynced, renamed over the
 * store, and the directory fsynced, so a crash leaves the old store or the new one, never a torn one.
 * Returns the new file's identity.
 */
export async function writeKeyStoreFile(file: string, keys: Map<string, StoredKey>): Promise<string> {
  const text = `${JSON.stringify({ format: 1, keys: Object.fromEntries(keys) }, null, 2)}\n`;
  const directory = dirname(file);
  const temporary = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const handle = await open(temporary, 'wx', 0o600);
  let identity: string;
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
    identity = identityOf(await handle.stat({ bigint: true }));
  } catch (error) {
    await handle.close();
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
  await handle.close();
  try {
    await rename(temporary, file);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
  const directoryHandle = await open(directory, 'r');
  try {
    await directoryHandle.sync();
  } finally {
    await directoryHandle.close();
  }
  return identity;
}

/** Makes the store's folder (0700) if missing, so its lock file can be created before the first write. */
export async function ensureKeyStoreFolder(file: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
}

/** Secrets must not be readable by other users: refuse any group or other permission bit. */
export function assertPrivateMode(file: string, mode: number, configKey: string): void {
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new ConfigError(
      configKey,
      `${file} has mode ${octal}, so other users can read or change it; run: chmod 600 ${file}`,
    );
  }
}

function identityOf(stats: { dev: bigint; ino: bigint; mtimeNs: bigint; size: bigint }): string {
  return `${stats.dev}:${stats.ino}:${stats.mtimeNs}:${stats.size}`;
}

function parseKeyStore(file: string, text: string): Map<string, StoredKey> {
  const malformed = (reason: string): IntegrityError =>
    new IntegrityError(`${file} is not a valid key store: ${reason}`);
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw malformed('not JSON');
  }
  if (!isRecord(document) || document.format !== 1 || !isRecord(document.keys)) {
    throw malformed('expected { "format": 1, "keys": { … } }');
  }
  const keys = new Map<string, StoredKey>();
  for (const [name, entry] of Object.entries(document.keys)) {
    if (!KEY_NAME.test(name)) {
      throw malformed(`invalid key name ${JSON.stringify(name)}`);
    }
    if (!isRecord(entry) || !isVersionNumber(entry.primary) || !Array.isArray(entry.versions)) {
      throw malformed(`key ${name} needs a primary version and a list of versions`);
    }
    const versions: StoredKeyVersion[] = [];
    for (const item of entry.versions as unknown[]) {
      const parsed = parseVersionRecord(item);
      const material = isRecord(item) ? item.material : undefined;
      // Exactly the destroyed versions lack material: a destroyed one keeping it would be a failed shred.
      const materialFits = parsed?.state === 'destroyed' ? material === undefined : typeof material === 'string';
      if (parsed === undefined || !materialFits) {
        throw malformed(`key ${name} has an invalid version entry`);
      }
      if (versions.some((known) => known.version === parsed.version)) {
        throw malformed(`key ${name} lists version ${String(parsed.version)} twice`);
      }
      versions.push(typeof material === 'string' ? { ...parsed, material } : parsed);
    }
    if (!versions.some((known) => known.version === entry.primary)) {
      throw malformed(`key ${name} names a primary version it does not have`);
    }
    keys.set(name, { primary: entry.primary, versions });
  }
  return keys;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
