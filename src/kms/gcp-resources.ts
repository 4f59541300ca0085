import { protos } from '@google-cloud/kms';
import { BadRequestError, ConfigError } from '../errors.js';
import type { KeyVersionInfo } from './kms.js';

/*
 * Names and values as Cloud KMS spells them, and back.
 *
 * A Strongroom key name becomes a CryptoKey id in the configured key ring by one reversible rule:
 * `.` → `D`, `:` → `C`, every other character unchanged (`tenant.t_abc` ↔ `tenantDt_abc`).
 * Strongroom names are lower case, so upper-case letters never occur in them and are free to stand
 * for the two characters CryptoKey ids do not allow ([a-zA-Z0-9_-]{1,63}). Ids have at most 63
 * characters, so the gcp provider takes names of at most 63 characters.
 */

type CryptoKeyVersion = protos.google.cloud.kms.v1.ICryptoKeyVersion;
type Timestamp = protos.google.protobuf.ITimestamp;
const VERSION_STATE = protos.google.cloud.kms.v1.CryptoKeyVersion.CryptoKeyVersionState;

/** The house's key names (see local-store-file.ts), cut to the length of a CryptoKey id. */
const KEY_NAME = /^[a-z0-9][a-z0-9._:-]{0,62}$/;
const KEY_RING = /^projects\/[^/\s]+\/locations\/[^/\s]+\/keyRings\/[a-zA-Z0-9_-]{1,63}$/;
/** host, or host:port; an IPv6 literal in brackets. */
const API_ENDPOINT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/;
const GCP_DEFAULT_PORT = 443;

export function assertKeyRing(keyRing: string): void {
  if (typeof keyRing !== 'string' || !KEY_RING.test(keyRing)) {
    throw new ConfigError('kms.gcp.keyRing', 'a key ring is named projects/PROJECT/locations/LOCATION/keyRings/RING');
  }
}

export function parseApiEndpoint(endpoint: string): { host: string; port: number } {
  const match = API_ENDPOINT.exec(endpoint);
  const port = match?.[2] === undefined ? GCP_DEFAULT_PORT : Number(match[2]);
  if (match === null || match[1] === undefined || port < 1 || port > 65535) {
    throw new ConfigError('kms.gcp.apiEndpoint', 'an API endpoint is host or host:port');
  }
  return { host: match[1], port };
}

/** The CryptoKey resource name for a Strongroom key name. */
export function cryptoKeyPath(keyRing: string, keyName: string): string {
  return `${keyRing}/cryptoKeys/${cryptoKeyId(keyName)}`;
}

/** The CryptoKey id for a Strongroom key name, by the rule above. */
export function cryptoKeyId(keyName: string): string {
  if (typeof keyName !== 'string' || !KEY_NAME.test(keyName)) {
    throw new BadRequestError(`a KMS key name for the gcp provider matches ${KEY_NAME.source}`);
  }
  return keyName.replaceAll('.', 'D').replaceAll(':', 'C');
}

export function versionPath(keyPath: string, version: number): string {
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new BadRequestError('a key version is a positive integer');
  }
  return `${keyPath}/cryptoKeyVersions/${version}`;
}

/** The version number in a CryptoKeyVersion name, or null when the name is not a version of `keyPath`. */
export function versionNumber(keyPath: string, name: string | null | undefined): number | null {
  const prefix = `${keyPath}/cryptoKeyVersions/`;
  if (typeof name !== 'string' || !name.startsWith(prefix)) {
    return null;
  }
  const digits = name.slice(prefix.length);
  return /^[1-9][0-9]{0,15}$/.test(digits) ? Number(digits) : null;
}

/** The gRPC transport delivers enum names; the type also allows numbers. */
export function stateName(state: CryptoKeyVersion['state']): string {
  return typeof state === 'number' ? VERSION_STATE[state] : (state ?? 'CRYPTO_KEY_VERSION_STATE_UNSPECIFIED');
}

/**
 * Our four states. Versions that are pending or failed (imported and asymmetric keys only; we create
 * neither) cannot be used, which is what `disabled` says to a caller.
 */
export function versionState(state: CryptoKeyVersion['state']): KeyVersionInfo['state'] {
  switch (stateName(state)) {
    case 'ENABLED':
      return 'enabled';
    case 'DESTROY_SCHEDULED':
    case 'PENDING_EXTERNAL_DESTRUCTION':
      return 'destroy_scheduled';
    case 'DESTROYED':
      return 'destroyed';
    default:
      return 'disabled';
  }
}

export function timestampDate(timestamp: Timestamp | null | undefined): Date | null {
  if (timestamp === null || timestamp === undefined || timestamp.seconds === null || timestamp.seconds === undefined) {
    return null;
  }
  // seconds arrives as a decimal string (int64); every date we meet is far inside Number's range.
  return new Date(Number(String(timestamp.seconds)) * 1000 + Math.floor((timestamp.nanos ?? 0) / 1e6));
}

/** A list of version numbers as a label value (lower-case letters, digits, `_` and `-`, at most 63). */
export function versionsLabel(versions: readonly number[]): string | null {
  const value = [...versions].sort((a, b) => a - b).join('_');
  return value.length <= 63 ? value : null;
}

export function parseVersionsLabel(value: string | undefined): Set<number> {
  return new Set((value ?? '').split('_').filter((part) => /^[1-9][0-9]*$/.test(part)).map(Number));
}
