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
  /** Creates a key with version 1 as primary. Fails with ConflictError if the name exists. */
  createKey(keyName: string): Promise<void>;
  /** Wraps (encrypts) a data key under the key's primary version; the result names the version used. */
  wrapKey(keyName: string, plaintextKey: Buffer, aad: Buffer): Promise<Buffer>;
  /** Unwraps with the version named in `wrapped`; throws IntegrityError if it does not authenticate. */
  unwrapKey(keyName: string, wrapped: Buffer, aad: Buffer): Promise<Buffer>;
  /** Makes a new primary version; older enabled versions still unwrap. Returns the new version. */
  rotateKey(keyName: string): Promise<number>;
  listKeyVersions(keyName: string): Promise<KeyVersionInfo[]>;
  health(): Promise<KmsHealth>;
  close(): Promise<void>;
}
