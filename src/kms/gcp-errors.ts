import {
  ConfigError,
  ConflictError,
  IntegrityError,
  NotFoundError,
  PreconditionFailedError,
  StrongroomError,
  UnavailableError,
} from '../errors.js';
import { UNWRAP_FAILED } from './kms.js';

/** The Cloud KMS methods the gcp provider calls, each with the IAM permission it needs (docs/kms-gcp.md). */
export const PERMISSION = {
  GetKeyRing: 'cloudkms.keyRings.get',
  CreateCryptoKey: 'cloudkms.cryptoKeys.create',
  GetCryptoKey: 'cloudkms.cryptoKeys.get',
  ListCryptoKeys: 'cloudkms.cryptoKeys.list',
  UpdateCryptoKey: 'cloudkms.cryptoKeys.update',
  UpdateCryptoKeyPrimaryVersion: 'cloudkms.cryptoKeys.update',
  CreateCryptoKeyVersion: 'cloudkms.cryptoKeyVersions.create',
  ListCryptoKeyVersions: 'cloudkms.cryptoKeyVersions.list',
  UpdateCryptoKeyVersion: 'cloudkms.cryptoKeyVersions.update',
  DestroyCryptoKeyVersion: 'cloudkms.cryptoKeyVersions.destroy',
  RestoreCryptoKeyVersion: 'cloudkms.cryptoKeyVersions.restore',
  Encrypt: 'cloudkms.cryptoKeyVersions.useToEncrypt',
  Decrypt: 'cloudkms.cryptoKeyVersions.useToDecrypt',
} as const;

export type GcpMethod = keyof typeof PERMISSION;


/** gRPC status codes (google/rpc/code.proto): a fixed wire contract, so named here rather than imported. */
const STATUS_NAME: Record<number, string> = {
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  15: 'DATA_LOSS',
  16: 'UNAUTHENTICATED',
};

/** Worth a retry later: the service, the network or a quota, not the request. */
const TRANSIENT = new Set(['CANCELLED', 'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED', 'ABORTED', 'INTERNAL', 'UNAVAILABLE']);

/**
 * Our error for a failed Cloud KMS call on `subject` ("KMS key tenant.x", "KMS key tenant.x version 2").
 * Messages carry the status name and never the error's own text, which can quote a credentials file
 * (JSON parse errors do) or fields of the request.
 */
export function gcpCallError(error: unknown, method: GcpMethod, subject: string): StrongroomError {
  if (error instanceof StrongroomError) {
    return error;
  }
  const code = (error as { code?: unknown } | null)?.code;
  const status = typeof code === 'number' ? STATUS_NAME[code] : undefined;
  if (status === undefined) {
    return new UnavailableError(`GCP KMS ${method} on ${subject} failed before an answer from the service`);
  }
  if (TRANSIENT.has(status)) {
    return new UnavailableError(`GCP KMS is unavailable: ${method} on ${subject} failed (${status})`);
  }
  switch (status) {
    case 'NOT_FOUND':
      return new NotFoundError(`${subject} not found`);
    case 'ALREADY_EXISTS':
      return new ConflictError(`${subject} already exists`);
    case 'FAILED_PRECONDITION':
      return new PreconditionFailedError(`${subject} cannot be used for ${method} in its current state (FAILED_PRECONDITION)`);
    case 'PERMISSION_DENIED':
      return new ConfigError(
        'kms.gcp.keyRing',
        `the service account may not call ${method} on ${subject}: it needs ${PERMISSION[method]} (PERMISSION_DENIED); see docs/kms-gcp.md`,
      );
    case 'UNAUTHENTICATED':
      return new ConfigError('kms.gcp.credentialsFile', `GCP KMS did not accept the credentials for ${method} (UNAUTHENTICATED)`);
    case 'INVALID_ARGUMENT':
      // We check sizes and names before sending, so here the ciphertext, the AAD or a CRC32C did not match.
      if (method === 'Decrypt') {
        return new IntegrityError(UNWRAP_FAILED);
      }
      if (method === 'Encrypt') {
        return new IntegrityError(`GCP KMS refused Encrypt on ${subject}: the request did not arrive intact (INVALID_ARGUMENT)`);
      }
      return new StrongroomError('internal', `GCP KMS refused ${method} on ${subject} as malformed (INVALID_ARGUMENT)`);
    default:
      return new StrongroomError('internal', `GCP KMS ${method} on ${subject} failed (${status})`);
  }
}
