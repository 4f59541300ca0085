import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { GcmParams, Mechanism } from 'pkcs11js';
import { ConfigError, ConflictError, IntegrityError, NotFoundError, UnavailableError } from '../errors.js';
import { assertKeyName } from './key-name.js';
import { assertKeyToWrap, DEFAULT_DESTROY_WAIT_SECONDS, UNWRAP_FAILED, WRAPPED_HEADER_LENGTH, wrappedKeyHeader, type KeyVersionInfo, type Kms, type KmsHealth } from './kms.js';
import { ckrCode } from './pkcs11-module.js';
import {
  findVersionKeys,
  generateVersionKey,
  readAllKeyRecords,
  readKeyRecord,
  withKeyLock,
  writeKeyRecord,
  type TokenKeyRecord,
} from './pkcs11-objects.js';
import { SessionPool } from './pkcs11-sessions.js';
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

/*
 * The `pkcs11` provider: key-encryption keys are AES-256 keys generated inside a PKCS#11 token
 * (SoftHSM2, YubiHSM, Luna, CloudHSM), sensitive and never extractable; the process sees only handles.
 * See pkcs11-objects.ts for what is stored on the token.
 *
 * Wrapped data keys: 0x02 | version (u32 BE) | iv (12) | ciphertext | tag (16), AES-256-GCM computed
 * inside the token under that key version, with the caller's AAD. The IV is random (from Node's
 * CSPRNG): a KEK wraps a few data keys, far below GCM's 2^32 random-IV limit.
 */

const WRAP_FORMAT = 0x02;
const IV_LENGTH = 12;
const TAG_LENGTH = 16;
const DEFAULT_SESSIONS = 8;
/** CK_STATE of a read/write session logged in as the user (PKCS#11 2.40 §5.7; pkcs11js does not export it). */
const CKS_RW_USER_FUNCTIONS = 3;

/** What a token answers to a GCM tag that does not verify (SoftHSM2: CKR_GENERAL_ERROR). */
const DECRYPT_REFUSED = new Set([
  pkcs11js.CKR_ENCRYPTED_DATA_INVALID,
  pkcs11js.CKR_ENCRYPTED_DATA_LEN_RANGE,
  pkcs11js.CKR_DATA_LEN_RANGE,
  pkcs11js.CKR_GENERAL_ERROR,
  pkcs11js.CKR_FUNCTION_FAILED,
]);

export interface Pkcs11KmsOptions {
  /** The PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  library: string;
  tokenLabel: string;
  /** The user PIN; kept only by the session pool, to log in again after an outage. */
  pin: string;
  /** Sessions opened on the token at most, hence concurrent calls; default 8. */
  sessions?: number;
  /** How long a key scheduled for destruction can still be restored; default 24 h. */
  destroyWaitSeconds?: number;
  clock?: () => Date;
}

/**
 * Opens the pkcs11 provider: loads the module, finds the token by label and logs in. Fails with
 * ConfigError for a module that does not load or a PIN the token refuses, UnavailableError if no
 * token has the label.
 *
 * @example const kms = await openPkcs11Kms({ library, tokenLabel: 'strongroom', pin: process.env.PIN! });
 */
export async function openPkcs11Kms(opts: Pkcs11KmsOptions): Promise<Kms> {
  const destroyWaitSeconds = opts.destroyWaitSeconds ?? DEFAULT_DESTROY_WAIT_SECONDS;
  if (!Number.isInteger(destroyWaitSeconds) || destroyWaitSeconds < 0) {
    throw new ConfigError('kms.destroyWaitSeconds', 'must be a whole number of seconds, 0 or more');
  }
  const sessions = opts.sessions ?? DEFAULT_SESSIONS;
  if (!Number.isInteger(sessions) || sessions < 1) {
    throw new ConfigError('kms.pkcs11.sessions', 'must be a whole number, 1 or more');
  }
  const pool = SessionPool.open({ library: opts.library, tokenLabel: opts.tokenLabel, pin: opts.pin, size: sessions });
  return new Pkcs11Kms(pool, opts.clock ?? (() => new Date()), destroyWaitSeconds * 1000);
}

class Pkcs11Kms implements Kms {
  readonly provider = 'pkcs11';
  private closed = false;

  constructor(
    private readonly pool: SessionPool,
    private readonly clock: () => Date,
    private readonly destroyWaitMs: number,
  ) {}

  async createKey(keyName: string): Promise<void> {
    this.assertOpen();
    assertKeyName(keyName);
    await withKeyLock(this.pool, keyName, () =>
      this.pool.use('creating a key', (session) => {
        // A destroyed key keeps its record: data wrapped under it must never meet a new key of that name.
        if (readKeyRecord(this.pool.pkcs11, session, keyName) !== undefined) {
          throw new ConflictError(`KMS key ${keyName} already exists`);
        }
        generateVersionKey(this.pool.pkcs11, session, keyName, 1);
        const record: TokenKeyRecord = { seq: 0, primary: 1, versions: [{ version: 1, state: 'enabled', createdAt: this.now() }] };
        writeKeyRecord(this.pool.pkcs11, session, keyName, record, []);
      }),
    );
  }

  async wrapKey(keyName: string, plaintextKey: Buffer, aad: Buffer): Promise<Buffer> {
    this.assertOpen();
    assertKeyName(keyName);
    assertKeyToWrap(plaintextKey);
    return this.pool.use('wrapping', async (session) => {
      const record = this.requireRecord(session, keyName);
      const primary = findVersion(record, keyName, record.primary);
      assertUsable(keyName, primary);
      const key = this.requireVersionKey(session, keyName, primary.version);
      const iv = randomBytes(IV_LENGTH);
      this.pool.pkcs11.C_EncryptInit(session, gcm(iv, aad), key);
      const sealed = await this.pool.pkcs11.C_EncryptAsync(session, plaintextKey, Buffer.alloc(plaintextKey.length + TAG_LENGTH));
      return Buffer.concat([wrappedKeyHeader(WRAP_FORMAT, primary.version), iv, sealed]);
    });
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
    const versionNumber = wrapped.readUInt32BE(1);
    return this.pool.use('unwrapping', async (session) => {
      const record = this.requireRecord(session, keyName);
      const version = findVersion(record, keyName, versionNumber);
      assertUsable(keyName, version);
      const key = this.requireVersionKey(session, keyName, version.version);
      const iv = wrapped.subarray(WRAPPED_HEADER_LENGTH, WRAPPED_HEADER_LENGTH + IV_LENGTH);
      const sealed = wrapped.subarray(WRAPPED_HEADER_LENGTH + IV_LENGTH);
      this.pool.pkcs11.C_DecryptInit(session, gcm(iv, aad), key);
      try {
        return await this.pool.pkcs11.C_DecryptAsync(session, sealed, Buffer.alloc(sealed.length));
      } catch (error) {
        // A token failing outright can answer with the same codes as a bad tag: ask whether it is still there.
        if (DECRYPT_REFUSED.has(ckrCode(error) ?? 0) && this.pool.tokenPresent()) {
          throw new IntegrityError(UNWRAP_FAILED);
        }
        throw error;
      }
    });
  }

  async rotateKey(keyName: string): Promise<number> {
    return this.changeRecord(keyName, 'rotating a key', (record, session) => {
      const next = nextVersion(record, keyName);
      generateVersionKey(this.pool.pkcs11, session, keyName, next);
      record.versions.push({ version: next, state: 'enabled', createdAt: this.now() });
      record.primary = next;
      return next;
    });
  }

  async listKeyVersions(keyName: string): Promise<KeyVersionInfo[]> {
    this.assertOpen();
    assertKeyName(keyName);
    return this.pool.use('listing key versions', (session) => describeVersions(this.requireRecord(session, keyName)));
  }

  async disableKeyVersion(keyName: string, version: number): Promise<void> {
    await this.changeRecord(keyName, 'disabling a key version', (record) => setVersionEnabled(record, keyName, version, false));
  }

  async enableKeyVersion(keyName: string, version: number): Promise<void> {
    await this.changeRecord(keyName, 'enabling a key version', (record) => setVersionEnabled(record, keyName, version, true));
  }

  async scheduleKeyDestruction(keyName: string): Promise<Date> {
    return this.changeRecord(keyName, 'scheduling a key destruction', (record) =>
      scheduleDestruction(record, keyName, new Date(this.clock().getTime() + this.destroyWaitMs)),
    );
  }

  async cancelKeyDestruction(keyName: string): Promise<void> {
    await this.changeRecord(keyName, 'cancelling a key destruction', (record) => cancelDestruction(record, keyName, this.clock()));
  }

  async destroyDueVersions(): Promise<number> {
    this.assertOpen();
    const now = this.clock();
    const due = await this.pool.use('listing keys', (session) =>
      [...readAllKeyRecords(this.pool.pkcs11, session)]
        .filter(([, record]) => dueVersions(record, now).length > 0)
        .map(([name]) => name),
    );
    let destroyed = 0;
    for (const keyName of due) {
      // Re-read under the lock: another process destroying the same versions leaves nothing to count here.
      destroyed += await this.changeRecord(keyName, 'destroying key versions', (record, session) => {
        const versions = dueVersions(record, this.clock());
        for (const version of versions) {
          // The material goes first: a crash before the record is written leaves a due version to retry.
          for (const object of findVersionKeys(this.pool.pkcs11, session, keyName, version.version)) {
            this.pool.pkcs11.C_DestroyObject(session, object);
          }
          markDestroyed(version);
        }
        return versions.length;
      });
    }
    return destroyed;
  }

  async health(): Promise<KmsHealth> {
    if (this.closed) {
      return { ok: false, provider: this.provider, detail: 'closed' };
    }
    try {
      const detail = await this.pool.use('checking health', (session) => {
        if (this.pool.pkcs11.C_GetSessionInfo(session).state !== CKS_RW_USER_FUNCTIONS) {
          throw new UnavailableError(`the session on PKCS#11 token "${this.pool.tokenLabel}" is not logged in`);
        }
        // Asks the token itself: a token that is gone fails here even where its sessions still look fine.
        return this.pool.describe();
      });
      return { ok: true, provider: this.provider, detail: `${detail}; logged in` };
    } catch (error) {
      return { ok: false, provider: this.provider, detail: error instanceof Error ? error.message : String(error) };
    }
  }

  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    await this.pool.close();
  }

  /** Read-change-write of a key's record under its token-wide lock; writes only if something changed. */
  private async changeRecord<T>(
    keyName: string,
    operation: string,
    change: (record: TokenKeyRecord, session: Buffer) => T,
  ): Promise<T> {
    this.assertOpen();
    assertKeyName(keyName);
    return withKeyLock(this.pool, keyName, () =>
      this.pool.use(operation, (session) => {
        const found = readKeyRecord(this.pool.pkcs11, session, keyName);
        if (found === undefined) {
          throw this.notFound(keyName);
        }
        const before = JSON.stringify(found.record);
        const result = change(found.record, session);
        if (JSON.stringify(found.record) !== before) {
          writeKeyRecord(this.pool.pkcs11, session, keyName, found.record, found.objects);
        }
        return result;
      }),
    );
  }

  private requireRecord(session: Buffer, keyName: string): TokenKeyRecord {
    const found = readKeyRecord(this.pool.pkcs11, session, keyName);
    if (found === undefined) {
      throw this.notFound(keyName);
    }
    return found.record;
  }

  private requireVersionKey(session: Buffer, keyName: string, version: number): Buffer {
    const objects = findVersionKeys(this.pool.pkcs11, session, keyName, version);
    if (objects.length === 1 && objects[0] !== undefined) {
      return objects[0];
    }
    if (objects.length === 0 && !this.pool.tokenPresent()) {
      throw new UnavailableError(`the PKCS#11 token "${this.pool.tokenLabel}" is unavailable; retry later`);
    }
    throw new IntegrityError(
      `the token holds ${objects.length} key objects for KMS key ${keyName} version ${version}; its record expects one`,
    );
  }

  /** Some tokens answer searches with nothing while they are gone: "not found" is only said of a token that is there. */
  private notFound(keyName: string): Error {
    if (!this.pool.tokenPresent()) {
      return new UnavailableError(`the PKCS#11 token "${this.pool.tokenLabel}" is unavailable; retry later`);
    }
    return new NotFoundError(`KMS key ${keyName} not found`);
  }

  private now(): string {
    return this.clock().toISOString();
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new UnavailableError('the PKCS#11 KMS is closed');
    }
  }
}

function gcm(iv: Buffer, aad: Buffer): Mechanism {
  const parameter: GcmParams = { type: pkcs11js.CK_PARAMS_GCM, iv, ivBits: IV_LENGTH * 8, aad, tagBits: TAG_LENGTH * 8 };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}
