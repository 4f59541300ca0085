import { BadRequestError, IntegrityError } from '../errors.js';

/**
 * The one KMS interface every provider implements. A key is named; it has numbered versions, one of
 * them primary. Callers wrap data keys with associated data and never see key-encryption-key
 * material: no method returns it.
 */
export interface KeyVersionInfo {
  version: number;
  state: 'enabled' | 'disabled' | 'destroy_scheduled' | 'destroyed';
  primary: boolean;
  createdAt: Date;
}

export interface KmsHealth {
  ok: boolean;
  provider: string;
  detail: string;
}

export interface Kms {
  readonly provider: string;
  /** Creates a key with version 1 as primary. Fails with ConflictError if the name exists, destroyed keys included. */
  createKey(keyName: string): Promise<void>;
  /** Wraps (encrypts) a data key under the key's primary version; the result names the version used. */
  wrapKey(keyName: string, plaintextKey: Buffer, aad: Buffer): Promise<Buffer>;
  /**
   * Unwraps with the version named in `wrapped`; throws IntegrityError if it does not authenticate,
   * PreconditionFailedError if that version is not enabled.
   */
  unwrapKey(keyName: string, wrapped: Buffer, aad: Buffer): Promise<Buffer>;
  /** Makes a new primary version; older enabled versions still unwrap. Returns the new version. */
  rotateKey(keyName: string): Promise<number>;
  listKeyVersions(keyName: string): Promise<KeyVersionInfo[]>;
  /** Stops one non-primary version from unwrapping (PreconditionFailedError for the primary) until enabled again. */
  disableKeyVersion(keyName: string, version: number): Promise<void>;
  enableKeyVersion(keyName: string, version: number): Promise<void>;
  /**
   * Schedules the destruction of every version of the key after the provider's waiting period
   * (`kms.destroyWaitSeconds`), and returns when. From now on no version wraps or unwraps; until
   * then `cancelKeyDestruction` restores them as they were; afterwards their material is gone.
   * Scheduling a key already scheduled returns the time first given.
   */
  scheduleKeyDestruction(keyName: string): Promise<Date>;
  /** PreconditionFailedError if nothing is scheduled or the waiting period is over. */
  cancelKeyDestruction(keyName: string): Promise<void>;
  /**
   * Destroys the material of versions whose scheduled time has passed, for providers where nothing
   * else does (GCP destroys on its own schedule, so there this only reports). Returns how many.
   */
  destroyDueVersions(): Promise<number>;
  health(): Promise<KmsHealth>;
  close(): Promise<void>;
}

/**
 * Every provider's wrapped key begins with its format byte and the KEK version that wrapped it
 * (u32 BE), so re-wrapping can tell which keys an old version still holds without a KMS call.
 */
export const WRAPPED_HEADER_LENGTH = 5;
const MAX_KEY_TO_WRAP = 1024;
/** One message for every unwrap failure, whichever check failed. */
export const UNWRAP_FAILED = 'wrapped key failed authentication';
/** How long a key scheduled for destruction can be restored, unless configured: kms.destroyWaitSeconds. */
export const DEFAULT_DESTROY_WAIT_SECONDS = 86_400;

export function wrappedKeyHeader(format: number, version: number): Buffer {
  const header = Buffer.allocUnsafe(WRAPPED_HEADER_LENGTH);
  header[0] = format;
  header.writeUInt32BE(version, 1);
  return header;
}

export function wrappedKeyVersion(wrapped: Buffer): number {
  if (wrapped.length < WRAPPED_HEADER_LENGTH) throw new IntegrityError('not a wrapped key');
  return wrapped.readUInt32BE(1);
}

/** The data key a caller asks to wrap: 1 to 1024 bytes. */
export function assertKeyToWrap(plaintextKey: Buffer): void {
  if (!Buffer.isBuffer(plaintextKey) || plaintextKey.length < 1 || plaintextKey.length > MAX_KEY_TO_WRAP) {
    throw new BadRequestError(`a key to wrap is 1 to ${MAX_KEY_TO_WRAP} bytes`);
  }
}
