import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import {
  BadRequestError,
  ConfigError,
  ConflictError,
  IntegrityError,
  NotFoundError,
  PreconditionFailedError,
  StrongroomError,
  UnavailableError,
} from '../errors.js';
import { withFileLock } from './file-lock.js';
import type { KeyVersionInfo, Kms, KmsHealth } from './kms.js';
import {
  KEY_NAME,
  ensureKeyStoreFolder,
  keyStoreFileIdentity,
  readKeyStoreFile,
  writeKeyStoreFile,
  type StoredKey,
  type StoredKeyVersion,
} from './local-store-file.js';

export { createMasterKeyFile, readMasterKey } from './master-key.js';

/*
 * The `local` provider keeps key-encryption keys (KEKs) in a 0600 JSON file, each sealed under a
 * master key, and holds them decrypted in memory: it is for one machine, and honest about it.
 *
 * KEK material in the file: base64( iv (12) | AES-256-GCM(master key, KEK) (32) | tag (16) ), with
 * AAD `strongroom-local-kms|<name>|<version>` so an entry copied to another name or version fails.
 *
 * Wrapped data keys: 0x01 | version (u32 BE) | iv (12) | ciphertext | tag (16), AES-256-GCM under
 * that KEK version with the caller's AAD.
 */

const KEK_LENGTH = 32;
const IV_LENGTH = 12;
const TAG_LENGTH = 16;
const MATERIAL_LENGTH = IV_LENGTH + KEK_LENGTH + TAG_LENGTH;
const WRAP_FORMAT = 0x01;
const WRAP_HEADER_LENGTH = 5;
const MAX_WRAPPED_KEY_LENGTH = 1024;
const UNWRAP_FAILED = 'wrapped key failed authentication';

export interface LocalKmsOptions {
  keyStoreFile: string;
  /** 32 bytes; copied, so the caller may wipe its own buffer. */
  masterKey: Buffer;
  clock?: () => Date;
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
  const kms = new LocalKms(opts.keyStoreFile, Buffer.from(opts.masterKey), opts.clock ?? (() => new Date()));
  await kms.load();
  return kms;
}

class LocalKms implements Kms {
  readonly provider = 'local';
  private keys = new Map<string, StoredKey>();
  private identity: string | null = null;
  /** Decrypted KEKs by `name|version`, with the material they came from (a restored file may differ). */
  private readonly keks = new Map<string, { material: string; kek: Buffer }>();
  /** Serializes this instance's writes; the lock file serializes them across processes. */
  private writes: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly file: string,
    private readonly masterKey: Buffer,
    private readonly clock: () => Date,
  ) {}

  async load(): Promise<void> {
    await this.reload();
    this.assertMasterKeyOpensStore();
  }

  async createKey(keyName: string): Promise<void> {
    this.assertOpen();
    assertKeyName(keyName);
    await this.modifyStore((keys) => {
      if (keys.has(keyName)) {
        throw new ConflictError(`KMS key ${keyName} already exists`);
      }
      keys.set(keyName, { primary: 1, versions: [this.newVersion(keyName, 1)] });
    });
  }

  async wrapKey(keyName: string, plaintextKey: Buffer, aad: Buffer): Promise<Buffer> {
    this.assertOpen();
    assertKeyName(keyName);
    if (!Buffer.isBuffer(plaintextKey) || plaintextKey.length < 1 || plaintextKey.length > MAX_WRAPPED_KEY_LENGTH) {
      throw new BadRequestError(`a key to wrap is 1 to ${MAX_WRAPPED_KEY_LENGTH} bytes`);
    }
    // Wrapping is rare and must use the current primary, which another process may have rotated.
    if ((await keyStoreFileIdentity(this.file)) !== this.identity) {
      await this.reload();
    }
    this.assertOpen();
    const key = this.keys.get(keyName);
    if (key === undefined) {
      throw new NotFoundError(`KMS key ${keyName} not found`);
    }
    const primary = findVersion(key, key.primary);
    const kek = this.usableKek(keyName, primary);

    const wrapped = Buffer.allocUnsafe(WRAP_HEADER_LENGTH + IV_LENGTH + plaintextKey.length + TAG_LENGTH);
    wrapped[0] = WRAP_FORMAT;
    wrapped.writeUInt32BE(primary.version, 1);
    // Random IVs are safe here: a KEK wraps a few data keys, far below GCM's 2^32 random-IV limit.
    const iv = randomBytes(IV_LENGTH);
    iv.copy(wrapped, WRAP_HEADER_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', kek, iv, { authTagLength: TAG_LENGTH });
    cipher.setAAD(aad);
    cipher.update(plaintextKey).copy(wrapped, WRAP_HEADER_LENGTH + IV_LENGTH);
    cipher.final();
    cipher.getAuthTag().copy(wrapped, wrapped.length - TAG_LENGTH);
    return wrapped;
  }

  async unwrapKey(keyName: string, wrapped: Buffer, aad: Buffer): Promise<Buffer> {
    this.assertOpen();
    assertKeyName(keyName);
    if (
      !Buffer.isBuffer(wrapped) ||
      wrapped.length < WRAP_HEADER_LENGTH + IV_LENGTH + 1 + TAG_LENGTH ||
      wrapped[0] !== WRAP_FORMAT
    ) {
      throw new IntegrityError(UNWRAP_FAILED);
    }
    const versionNumber = wrapped.readUInt32BE(1);
    let version = this.lookupVersion(keyName, versionNumber);
    if (version === undefined) {
      // Another process (the CLI) may have created or rotated the key since we last read the file.
      await this.reload();
      version = this.lookupVersion(keyName, versionNumber);
      this.assertOpen();
    }
    if (version === undefined) {
      throw new NotFoundError(`KMS key ${keyName} version ${versionNumber} not found`);
    }
    const kek = this.usableKek(keyName, version);
    const decipher = createDecipheriv(
      'aes-256-gcm',
      kek,
      wrapped.subarray(WRAP_HEADER_LENGTH, WRAP_HEADER_LENGTH + IV_LENGTH),
      { authTagLength: TAG_LENGTH },
    );
    decipher.setAuthTag(wrapped.subarray(wrapped.length - TAG_LENGTH));
    decipher.setAAD(aad);
    const plaintextKey = decipher.update(wrapped.subarray(WRAP_HEADER_LENGTH + IV_LENGTH, wrapped.length - TAG_LENGTH));
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
      const key = keys.get(keyName);
      if (key === undefined) {
        throw new NotFoundError(`KMS key ${keyName} not found`);
      }
      const next = Math.max(...key.versions.map((entry) => entry.version)) + 1;
      key.versions.push(this.newVersion(keyName, next));
      key.primary = next;
      return next;
    });
  }

  async listKeyVersions(keyName: string): Promise<KeyVersionInfo[]> {
    this.assertOpen();
    assertKeyName(keyName);
    if ((await keyStoreFileIdentity(this.file)) !== this.identity) {
      await this.reload();
    }
    const key = this.keys.get(keyName);
    if (key === undefined) {
      throw new NotFoundError(`KMS key ${keyName} not found`);
    }
    return key.versions.map((entry) => ({
      version: entry.version,
      state: entry.state,
      primary: entry.version === key.primary,
      createdAt: new Date(entry.createdAt),
    }));
  }

  async health(): Promise<KmsHealth> {
    if (this.closed) {
      return { ok: false, provider: this.provider, detail: 'closed' };
    }
    try {
      // A fresh read, not the cache: the probe must show the file and master key work now.
      const { keys } = await readKeyStoreFile(this.file);
      const probe = keys.entries().next();
      if (probe.done === true) {
        return { ok: true, provider: this.provider, detail: 'key store readable; no keys yet' };
      }
      const [name, key] = probe.value;
      openMaterial(this.masterKey, name, findVersion(key, key.primary)).fill(0);
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

  /** Read-modify-write under the lock, re-reading the file inside it so no other writer's update is lost. */
  private modifyStore<T>(change: (keys: Map<string, StoredKey>) => T): Promise<T> {
    const run = this.writes.then(async () => {
      await ensureKeyStoreFolder(this.file);
      return withFileLock(`${this.file}.lock`, async () => {
        const { keys } = await readKeyStoreFile(this.file);
        const result = change(keys);
        const identity = await writeKeyStoreFile(this.file, keys);
        this.keys = keys;
        this.identity = identity;
        return result;
      });
    });
    this.writes = run.catch(() => undefined);
    return run;
  }

  private async reload(): Promise<void> {
    const snapshot = await readKeyStoreFile(this.file);
    this.keys = snapshot.keys;
    this.identity = snapshot.identity;
  }

  private newVersion(keyName: string, version: number): StoredKeyVersion {
    // Not cached here: the write may still fail. The first use opens it from the material.
    const kek = randomBytes(KEK_LENGTH);
    const material = sealMaterial(this.masterKey, keyName, version, kek);
    kek.fill(0);
    return { version, state: 'enabled', createdAt: this.clock().toISOString(), material };
  }

  private lookupVersion(keyName: string, version: number): StoredKeyVersion | undefined {
    return this.keys.get(keyName)?.versions.find((entry) => entry.version === version);
  }

  private usableKek(keyName: string, version: StoredKeyVersion): Buffer {
    if (version.state !== 'enabled') {
      throw new PreconditionFailedError(`KMS key ${keyName} version ${version.version} is ${version.state}`);
    }
    const slot = `${keyName}|${version.version}`;
    const cached = this.keks.get(slot);
    if (cached !== undefined && cached.material === version.material) {
      return cached.kek;
    }
    const kek = openMaterial(this.masterKey, keyName, version);
    cached?.kek.fill(0);
    this.keks.set(slot, { material: version.material, kek });
    return kek;
  }

  /** A wrong master key opens no entry; one damaged entry alone must not stop the other tenants. */
  private assertMasterKeyOpensStore(): void {
    if (this.keys.size === 0) {
      return;
    }
    for (const [name, key] of this.keys) {
      for (const version of key.versions) {
        try {
          openMaterial(this.masterKey, name, version).fill(0);
          return;
        } catch {
          // Try the next entry.
        }
      }
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

function assertKeyName(keyName: string): void {
  if (typeof keyName !== 'string' || !KEY_NAME.test(keyName)) {
    throw new BadRequestError(`a KMS key name matches ${KEY_NAME.source}`);
  }
}

function findVersion(key: StoredKey, version: number): StoredKeyVersion {
  const found = key.versions.find((entry) => entry.version === version);
  if (found === undefined) {
    // The store parser guarantees the primary exists; reaching here is a bug.
    throw new StrongroomError('internal', `key version ${version} missing from a parsed store`);
  }
  return found;
}

function materialAad(keyName: string, version: number): Buffer {
  return Buffer.from(`strongroom-local-kms|${keyName}|${version}`, 'utf8');
}

function sealMaterial(masterKey: Buffer, keyName: string, version: number, kek: Buffer): string {
  const iv = randomBytes(IV_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', masterKey, iv, { authTagLength: TAG_LENGTH });
  cipher.setAAD(materialAad(keyName, version));
  const sealed = Buffer.concat([iv, cipher.update(kek), cipher.final(), cipher.getAuthTag()]);
  return sealed.toString('base64');
}

function openMaterial(masterKey: Buffer, keyName: string, version: StoredKeyVersion): Buffer {
  const failed = new IntegrityError(
    `KMS key ${keyName} version ${version.version} does not open under the master key: wrong master key, or the key store was edited`,
  );
  const sealed = Buffer.from(version.material, 'base64');
  if (sealed.length !== MATERIAL_LENGTH) {
    throw failed;
  }
  const decipher = createDecipheriv('aes-256-gcm', masterKey, sealed.subarray(0, IV_LENGTH), {
    authTagLength: TAG_LENGTH,
  });
  decipher.setAuthTag(sealed.subarray(IV_LENGTH + KEK_LENGTH));
  decipher.setAAD(materialAad(keyName, version.version));
  const kek = decipher.update(sealed.subarray(IV_LENGTH, IV_LENGTH + KEK_LENGTH));
  try {
    decipher.final();
  } catch {
    kek.fill(0);
    throw failed;
  }
  return kek;
}
