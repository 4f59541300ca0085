import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ConfigError, ConflictError, IntegrityError, NotFoundError, UnavailableError } from '../errors.js';
import { withFileLock } from './file-lock.js';
import { assertKeyName } from './key-name.js';
import { assertKeyToWrap, DEFAULT_DESTROY_WAIT_SECONDS, UNWRAP_FAILED, WRAPPED_HEADER_LENGTH, wrappedKeyHeader, type KeyVersionInfo, type Kms, type KmsHealth } from './kms.js';
import { KEK_LENGTH, materialOf, openMaterial, sealMaterial } from './local-material.js';
import {
  ensureKeyStoreFolder,
  keyStoreFileIdentity,
  readKeyStoreFile,
  writeKeyStoreFile,
  type StoredKey,
  type StoredKeyVersion,
} from './local-store-file.js';
import {
  assertUsable,
  cancelDestruction,
  describeVersions,
  dueVersions,
  findVersion,
  markDestroyed,
  nextVersion,
  scheduleDestruction,
  setVersionEnabled,
} from './version-lifecycle.js';

export { createMasterKeyFile, readMasterKey } from './master-key.js';

/*
 * The `local` provider keeps key-encryption keys (KEKs) in a 0600 JSON file, each sealed under a
 * master key (local-material.ts), and holds them decrypted in memory: it is for one machine, and
 * honest about it.
 *
 * Wrapped data keys: 0x01 | version (u32 BE) | iv (12) | ciphertext | tag (16), AES-256-GCM under
 * that KEK version with the caller's AAD.
 */

const IV_LENGTH = 12;
const TAG_LENGTH = 16;
const WRAP_FORMAT = 0x01;

export interface LocalKmsOptions {
  keyStoreFile: string;
  /** 32 bytes; copied, so the caller may wipe its own buffer. */
  masterKey: Buffer;
  clock?: () => Date;
  /** How long a key scheduled for destruction can still be restored; default 24 h. */
  destroyWaitSeconds?: number;
}

/**
 * Opens the local KMS over a key store file (created on the first write). Fails with ConfigError if
 * the file is readable by group or others, or if the master key opens none of its keys.
 *
 * @example const kms = await openLocalKms({ keyStoreFile, masterKey: await readMasterKey({ file }) });
 */
export async function openLocalKms(opts: LocalKmsOptions): Promise<Kms> {
  if (!Buffer.isBuffer(opts.masterKey) || opts.masterKey.length !== KEK_LENGTH) {
    throw new ConfigError('kms.local.masterKey', 'the master key must be 32 bytes');
  }
  const destroyWaitSeconds = opts.destroyWaitSeconds ?? DEFAULT_DESTROY_WAIT_SECONDS;
  if (!Number.isInteger(destroyWaitSeconds) || destroyWaitSeconds < 0) {
    throw new ConfigError('kms.destroyWaitSeconds', 'must be a whole number of seconds, 0 or more');
  }
  const kms = new LocalKms(
    opts.keyStoreFile,
    Buffer.from(opts.masterKey),
    opts.clock ?? (() => new Date()),
    destroyWaitSeconds * 1000,
  );
  await kms.load();
  return kms;
}

class LocalKms implements Kms {
  readonly provider = 'local';
  private keys = new Map<string, StoredKey>();
  private identity: string | null = null;
  /** Decrypted KEKs by `name|version`, with the material they came from (a restored file may differ). */
  private readonly keks = new Map<string, { name: string; version: number; material: string; kek: Buffer }>();
  /** Serializes this instance's writes; the lock file serializes them across processes. */
  private writes: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly file: string,
    private readonly masterKey: Buffer,
    private readonly clock: () => Date,
    private readonly destroyWaitMs: number,
  ) {}

  async load(): Promise<void> {
    await this.reload();
    this.assertMasterKeyOpensStore();
  }

  async createKey(keyName: string): Promise<void> {
    this.assertOpen();
    assertKeyName(keyName);
    await this.modifyStore((keys) => {
      // A destroyed key keeps its name: data wrapped under it must never meet a new key of that name.
      if (keys.has(keyName)) {
        throw new ConflictError(`KMS key ${keyName} already exists`);
      }
      keys.set(keyName, { primary: 1, versions: [this.newVersion(keyName, 1)] });
    });
  }

  async wrapKey(keyName: string, plaintextKey: Buffer, aad: Buffer): Promise<Buffer> {
    this.assertOpen();
    assertKeyName(keyName);
    assertKeyToWrap(plaintextKey);
    // Wrapping must use the current primary, which another process may have rotated.
    await this.refresh();
    const key = requireKey(this.keys, keyName);
    const primary = findVersion(key, keyName, key.primary);
    const kek = this.usableKek(keyName, primary);

    const wrapped = Buffer.allocUnsafe(WRAPPED_HEADER_LENGTH + IV_LENGTH + plaintextKey.length + TAG_LENGTH);
    wrappedKeyHeader(WRAP_FORMAT, primary.version).copy(wrapped);
    // Random IVs are safe here: a KEK wraps a few data keys, far below GCM's 2^32 random-IV limit.
    const iv = randomBytes(IV_LENGTH);
    iv.copy(wrapped, WRAPPED_HEADER_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', kek, iv, { authTagLength: TAG_LENGTH });
    cipher.setAAD(aad);
    cipher.update(plaintextKey).copy(wrapped, WRAPPED_HEADER_LENGTH + IV_LENGTH);
    cipher.final();
    cipher.getAuthTag().copy(wrapped, wrapped.length - TAG_LENGTH);
    return wrapped;
  }

  async unwrapKey(keyName: string, wrapped: Buffer, aad: Buffer): Promise<Buffer> {
    this.assertOpen();
    assertKeyName(keyName);
    if (
      !Buffer.isBuffer(wrapped) ||
      wrapped.length < WRAPPED_HEADER_LENGTH + IV_LENGTH + 1 + TAG_LENGTH ||
      wrapped[0] !== WRAP_FORMAT
    ) {
      throw new IntegrityError(UNWRAP_FAILED);
    }
    // Another process (the CLI, a purge) may have created, disabled or destroyed the version.
    await this.refresh();
    const version = findVersion(requireKey(this.keys, keyName), keyName, wrapped.readUInt32BE(1));
    const kek = this.usableKek(keyName, version);
    const decipher = createDecipheriv(
      'aes-256-gcm',
      kek,
      wrapped.subarray(WRAPPED_HEADER_LENGTH, WRAPPED_HEADER_LENGTH + IV_LENGTH),
      { authTagLength: TAG_LENGTH },
    );
    decipher.setAuthTag(wrapped.subarray(wrapped.length - TAG_LENGTH));
    decipher.setAAD(aad);
    const plaintextKey = decipher.update(wrapped.subarray(WRAPPED_HEADER_LENGTH + IV_LENGTH, wrapped.length - TAG_LENGTH));
    try {
      decipher.final();
    } catch {
      plaintextKey.fill(0);
      throw new IntegrityError(UNWRAP_FAILED);
    }
    return plaintextKey;
  }

  async rotateKey(keyName: string): Promise<number> {
    this.assertOpen();
    assertKeyName(keyName);
    return this.modifyStore((keys) => {
      const key = requireKey(keys, keyName);
      const next = nextVersion(key, keyName);
      key.versions.push(this.newVersion(keyName, next));
      key.primary = next;
      return next;
    });
  }

  async listKeyVersions(keyName: string): Promise<KeyVersionInfo[]> {
    this.assertOpen();
    assertKeyName(keyName);
    await this.refresh();
    return describeVersions(requireKey(this.keys, keyName));
  }

  async disableKeyVersion(keyName: string, version: number): Promise<void> {
    await this.setEnabled(keyName, version, false);
  }

  async enableKeyVersion(keyName: string, version: number): Promise<void> {
    await this.setEnabled(keyName, version, true);
  }

  async scheduleKeyDestruction(keyName: string): Promise<Date> {
    this.assertOpen();
    assertKeyName(keyName);
    return this.modifyStore((keys) =>
      scheduleDestruction(requireKey(keys, keyName), keyName, new Date(this.clock().getTime() + this.destroyWaitMs)),
    );
  }

  async cancelKeyDestruction(keyName: string): Promise<void> {
    this.assertOpen();
    assertKeyName(keyName);
    await this.modifyStore((keys) => cancelDestruction(requireKey(keys, keyName), keyName, this.clock()));
  }

  /**
   * Deletes the sealed material of due versions from the store. The file is replaced whole, so no
   * copy remains in it; copies of the file made earlier (backups) still hold the sealed material.
   */
  async destroyDueVersions(): Promise<number> {
    this.assertOpen();
    // A read without the lock first: the job runs often and usually finds nothing to do.
    await this.reload();
    if (!hasDueVersions(this.keys, this.clock())) {
      return 0;
    }
    // Re-read under the lock: another process destroying the same versions leaves nothing to count here.
    return this.modifyStore((keys) => {
      const now = this.clock();
      let destroyed = 0;
      for (const key of keys.values()) {
        for (const version of dueVersions(key, now)) {
          markDestroyed(version);
          delete version.material;
          destroyed += 1;
        }
      }
      return destroyed;
    });
  }

  async health(): Promise<KmsHealth> {
    if (this.closed) {
      return { ok: false, provider: this.provider, detail: 'closed' };
    }
    try {
      // A fresh read, not the cache: the probe must show the file and master key work now.
      const { keys } = await readKeyStoreFile(this.file);
      const probe = firstSealedVersion(keys);
      if (probe === undefined) {
        const detail = keys.size === 0 ? 'no keys yet' : `${keys.size} keys, all destroyed`;
        return { ok: true, provider: this.provider, detail: `key store readable; ${detail}` };
      }
      openMaterial(this.masterKey, probe.name, probe.version).fill(0);
      return { ok: true, provider: this.provider, detail: `key store readable; ${keys.size} keys; master key verified` };
    } catch (error) {
      return { ok: false, provider: this.provider, detail: error instanceof Error ? error.message : String(error) };
    }
  }

  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    await this.writes;
    for (const entry of this.keks.values()) {
      entry.kek.fill(0);
    }
    this.keks.clear();
    this.keys.clear();
    this.masterKey.fill(0);
  }

  private async setEnabled(keyName: string, version: number, enabled: boolean): Promise<void> {
    this.assertOpen();
    assertKeyName(keyName);
    await this.modifyStore((keys) => setVersionEnabled(requireKey(keys, keyName), keyName, version, enabled));
  }

  /** Read-modify-write under the lock, re-reading the file inside it so no other writer's update is lost. */
  private modifyStore<T>(change: (keys: Map<string, StoredKey>) => T): Promise<T> {
    const run = this.writes.then(async () => {
      await ensureKeyStoreFolder(this.file);
      return withFileLock(`${this.file}.lock`, async () => {
        const { keys } = await readKeyStoreFile(this.file);
        const result = change(keys);
        const identity = await writeKeyStoreFile(this.file, keys);
        this.replaceKeys(keys, identity);
        return result;
      });
    });
    this.writes = run.catch(() => undefined);
    return run;
  }

  /** Re-reads the store if another process (or instance) has replaced the file since the last read. */
  private async refresh(): Promise<void> {
    if ((await keyStoreFileIdentity(this.file)) !== this.identity) {
      await this.reload();
    }
    this.assertOpen();
  }

  private async reload(): Promise<void> {
    const snapshot = await readKeyStoreFile(this.file);
    this.replaceKeys(snapshot.keys, snapshot.identity);
  }

  /** Takes a newer store, wiping cached KEKs whose material it no longer holds (destroyed, or restored). */
  private replaceKeys(keys: Map<string, StoredKey>, identity: string | null): void {
    this.keys = keys;
    this.identity = identity;
    for (const [slot, cached] of this.keks) {
      const entry = keys.get(cached.name)?.versions.find((known) => known.version === cached.version);
      if (entry?.material !== cached.material) {
        cached.kek.fill(0);
        this.keks.delete(slot);
      }
    }
  }

  private newVersion(keyName: string, version: number): StoredKeyVersion {
    // Not cached here: the write may still fail. The first use opens it from the material.
    const kek = randomBytes(KEK_LENGTH);
    const material = sealMaterial(this.masterKey, keyName, version, kek);
    kek.fill(0);
    return { version, state: 'enabled', createdAt: this.clock().toISOString(), material };
  }

  private usableKek(keyName: string, version: StoredKeyVersion): Buffer {
    assertUsable(keyName, version);
    const slot = `${keyName}|${version.version}`;
    const cached = this.keks.get(slot);
    if (cached !== undefined && cached.material === version.material) {
      return cached.kek;
    }
    const kek = openMaterial(this.masterKey, keyName, version);
    cached?.kek.fill(0);
    this.keks.set(slot, { name: keyName, version: version.version, material: materialOf(keyName, version), kek });
    return kek;
  }

  /** A wrong master key opens no entry; one damaged entry alone must not stop the other tenants. */
  private assertMasterKeyOpensStore(): void {
    let sealed = 0;
    for (const [name, key] of this.keys) {
      for (const version of key.versions) {
        if (version.material === undefined) {
          continue;
        }
        sealed += 1;
        try {
          openMaterial(this.masterKey, name, version).fill(0);
          return;
        } catch {
          // Try the next entry.
        }
      }
    }
    if (sealed === 0) {
      return;
    }
    throw new ConfigError(
      'kms.local.masterKey',
      `the master key opens no key in ${this.file}: it is not the master key this store was written with`,
    );
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new UnavailableError('the local KMS is closed');
    }
  }
}

function requireKey(keys: Map<string, StoredKey>, keyName: string): StoredKey {
  const key = keys.get(keyName);
  if (key === undefined) {
    throw new NotFoundError(`KMS key ${keyName} not found`);
  }
  return key;
}

function hasDueVersions(keys: Map<string, StoredKey>, now: Date): boolean {
  for (const key of keys.values()) {
    if (dueVersions(key, now).length > 0) {
      return true;
    }
  }
  return false;
}

function firstSealedVersion(keys: Map<string, StoredKey>): { name: string; version: StoredKeyVersion } | undefined {
  for (const [name, key] of keys) {
    const version = key.versions.find((entry) => entry.material !== undefined);
    if (version !== undefined) {
      return { name, version };
    }
  }
  return undefined;
}
