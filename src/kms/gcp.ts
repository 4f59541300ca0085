import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { crc32c } from '@aws-crypto/crc32c';
import { KeyManagementServiceClient, type protos } from '@google-cloud/kms';
import { BadRequestError, ConfigError, IntegrityError, PreconditionFailedError, StrongroomError } from '../errors.js';
import { GcpCalls } from './gcp-calls.js';
import { cancelKeyDestruction, reportDestroyedVersions, scheduleKeyDestruction } from './gcp-destruction.js';
import {
  assertKeyRing,
  cryptoKeyId,
  cryptoKeyPath,
  parseApiEndpoint,
  stateName,
  timestampDate,
  versionNumber,
  versionPath,
  versionState,
} from './gcp-resources.js';
import { assertKeyToWrap, UNWRAP_FAILED, WRAPPED_HEADER_LENGTH, wrappedKeyHeader, type KeyVersionInfo, type Kms, type KmsHealth } from './kms.js';

/*
 * The `gcp` provider: key-encryption keys live in Google Cloud KMS and never leave it; this process
 * sends data keys to Encrypt and Decrypt. Key names map to CryptoKey ids as gcp-resources.ts says.
 *
 * Wrapped data keys: 0x47 ('G') | version (u32 BE) | Cloud KMS ciphertext. The ciphertext names its
 * version itself and Decrypt picks it; our copy of the number lets rewrap find old versions without a
 * call, and is not authenticated (changing it changes no plaintext that comes out).
 *
 * Scheduled destruction: gcp-destruction.ts. Calls, time limits and error mapping: gcp-calls.ts.
 */

const WRAP_FORMAT = 0x47;
/** Cloud KMS's limit on additional authenticated data. */
const MAX_AAD_LENGTH = 65_536;
/** Cloud KMS keeps a version scheduled for destruction between 24 hours and 120 days. */
const MIN_DESTROY_WAIT_SECONDS = 86_400;
const MAX_DESTROY_WAIT_SECONDS = 120 * 86_400;
/** One call with the client's retries: a KMS outage must not hold a request for the library's 60 s. */
const DEFAULT_CALL_TIMEOUT_MS = 10_000;

type Int64Value = protos.google.protobuf.IInt64Value;

export interface GcpKmsOptions {
  /** projects/P/locations/L/keyRings/R; keys are created in it. */
  keyRing: string;
  /** A service account's JSON key file; unset: Application Default Credentials. */
  credentialsFile?: string | null;
  /** host or host:port of another endpoint (a private endpoint); unset: Google's. */
  apiEndpoint?: string | null;
  /** How long a version scheduled for destruction can be restored: at least 24 hours on GCP. */
  destroyWaitSeconds: number;
  /** A client made elsewhere (tests talk to a local server); the provider closes it with itself. */
  client?: KeyManagementServiceClient;
  /** Time allowed for one call, the client's retries included. */
  callTimeoutMs?: number;
}

/**
 * Opens the gcp provider. Makes no call: a KMS that is down at start-up shows in `health()`, not as a
 * failure to start.
 *
 * @example const kms = await openGcpKms({ keyRing: 'projects/p/locations/europe-west1/keyRings/strongroom', destroyWaitSeconds: 86400 });
 */
export async function openGcpKms(opts: GcpKmsOptions): Promise<Kms> {
  assertKeyRing(opts.keyRing);
  const wait = opts.destroyWaitSeconds;
  if (!Number.isInteger(wait) || wait < MIN_DESTROY_WAIT_SECONDS || wait > MAX_DESTROY_WAIT_SECONDS) {
    throw new ConfigError(
      'kms.destroyWaitSeconds',
      `Google Cloud KMS keeps a key version scheduled for destruction between 24 hours and 120 days: set 86400 to ${MAX_DESTROY_WAIT_SECONDS} seconds for the gcp provider`,
    );
  }
  const client = opts.client ?? (await makeClient(opts));
  return new GcpKms(new GcpCalls(client, opts.keyRing, opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS), wait);
}

async function makeClient(opts: GcpKmsOptions): Promise<KeyManagementServiceClient> {
  const credentialsFile = opts.credentialsFile ?? null;
  if (credentialsFile !== null) {
    try {
      await access(credentialsFile, constants.R_OK);
    } catch {
      throw new ConfigError('kms.gcp.credentialsFile', `cannot read ${credentialsFile}`);
    }
  }
  const endpoint = opts.apiEndpoint === null || opts.apiEndpoint === undefined ? null : parseApiEndpoint(opts.apiEndpoint);
  return new KeyManagementServiceClient({
    ...(credentialsFile === null ? {} : { keyFilename: credentialsFile }),
    ...(endpoint === null ? {} : { apiEndpoint: endpoint.host, port: endpoint.port }),
  });
}

class GcpKms implements Kms {
  readonly provider = 'gcp';
  private readonly client: KeyManagementServiceClient;
  private readonly keyRing: string;

  constructor(
    private readonly calls: GcpCalls,
    private readonly destroyWaitSeconds: number,
  ) {
    this.client = calls.client;
    this.keyRing = calls.keyRing;
  }

  async createKey(keyName: string): Promise<void> {
    const id = cryptoKeyId(keyName);
    await this.calls.call('CreateCryptoKey', `KMS key ${keyName}`, (options) =>
      this.client.createCryptoKey(
        {
          parent: this.keyRing,
          cryptoKeyId: id,
          cryptoKey: {
            purpose: 'ENCRYPT_DECRYPT',
            versionTemplate: { algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION', protectionLevel: 'SOFTWARE' },
            destroyScheduledDuration: { seconds: this.destroyWaitSeconds },
          },
        },
        options,
      ),
    );
  }

  async wrapKey(keyName: string, plaintextKey: Buffer, aad: Buffer): Promise<Buffer> {
    const keyPath = cryptoKeyPath(this.keyRing, keyName);
    assertKeyToWrap(plaintextKey);
    assertAad(aad);
    const [response] = await this.calls.call('Encrypt', `KMS key ${keyName}`, (options) =>
      this.client.encrypt(
        {
          name: keyPath,
          plaintext: plaintextKey,
          additionalAuthenticatedData: aad,
          plaintextCrc32c: { value: crc32c(plaintextKey) },
          additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
        },
        options,
      ),
    );
    // Google's integrity protocol: the service confirms it received what we sent, and checksums what it returns.
    const ciphertext = response.ciphertext;
    const version = versionNumber(keyPath, response.name);
    if (
      response.verifiedPlaintextCrc32c !== true ||
      response.verifiedAdditionalAuthenticatedDataCrc32c !== true ||
      !(ciphertext instanceof Uint8Array) ||
      ciphertext.length === 0 ||
      !crcMatches(ciphertext, response.ciphertextCrc32c) ||
      version === null
    ) {
      throw new IntegrityError(`GCP KMS Encrypt on KMS key ${keyName}: the request or the answer did not arrive intact`);
    }
    return Buffer.concat([wrappedKeyHeader(WRAP_FORMAT, version), ciphertext]);
  }

  async unwrapKey(keyName: string, wrapped: Buffer, aad: Buffer): Promise<Buffer> {
    const keyPath = cryptoKeyPath(this.keyRing, keyName);
    if (!Buffer.isBuffer(wrapped) || wrapped.length <= WRAPPED_HEADER_LENGTH || wrapped[0] !== WRAP_FORMAT) {
      throw new IntegrityError(UNWRAP_FAILED);
    }
    assertAad(aad);
    const ciphertext = wrapped.subarray(WRAPPED_HEADER_LENGTH);
    const [response] = await this.calls.call('Decrypt', `KMS key ${keyName} version ${wrapped.readUInt32BE(1)}`, (options) =>
      this.client.decrypt(
        {
          name: keyPath,
          ciphertext,
          additionalAuthenticatedData: aad,
          ciphertextCrc32c: { value: crc32c(ciphertext) },
          additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
        },
        options,
      ),
    );
    const plaintext = response.plaintext;
    if (!(plaintext instanceof Uint8Array) || !crcMatches(plaintext, response.plaintextCrc32c)) {
      if (plaintext instanceof Uint8Array) {
        plaintext.fill(0);
      }
      throw new IntegrityError(`GCP KMS Decrypt on KMS key ${keyName}: the answer did not arrive intact`);
    }
    return Buffer.isBuffer(plaintext) ? plaintext : Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.length);
  }

  async rotateKey(keyName: string): Promise<number> {
    const keyPath = cryptoKeyPath(this.keyRing, keyName);
    const subject = `KMS key ${keyName}`;
    // Cloud KMS would add a version to a key whose versions await destruction: a purged key must stay dead.
    const [key] = await this.calls.call('GetCryptoKey', subject, (options) => this.client.getCryptoKey({ name: keyPath }, options));
    if (['DESTROY_SCHEDULED', 'DESTROYED'].includes(stateName(key.primary?.state))) {
      throw new PreconditionFailedError(`${subject} is scheduled for destruction or destroyed: it does not rotate`);
    }
    const [created] = await this.calls.call('CreateCryptoKeyVersion', subject, (options) =>
      this.client.createCryptoKeyVersion({ parent: keyPath, cryptoKeyVersion: {} }, options),
    );
    const version = versionNumber(keyPath, created.name);
    if (version === null) {
      throw new StrongroomError('internal', `GCP KMS CreateCryptoKeyVersion on ${subject} answered with another resource`);
    }
    await this.calls.call('UpdateCryptoKeyPrimaryVersion', `${subject} version ${version}`, (options) =>
      this.client.updateCryptoKeyPrimaryVersion({ name: keyPath, cryptoKeyVersionId: String(version) }, options),
    );
    return version;
  }

  async listKeyVersions(keyName: string): Promise<KeyVersionInfo[]> {
    const keyPath = cryptoKeyPath(this.keyRing, keyName);
    const { key, versions } = await this.calls.readKey(keyName, keyPath);
    const primary = key.primary?.name ?? null;
    return versions
      .map((entry) => ({
        version: this.calls.versionOf(keyPath, entry),
        state: versionState(entry.state),
        primary: entry.name === primary,
        createdAt: timestampDate(entry.createTime) ?? new Date(0),
      }))
      .sort((a, b) => a.version - b.version);
  }

  async disableKeyVersion(keyName: string, version: number): Promise<void> {
    const keyPath = cryptoKeyPath(this.keyRing, keyName);
    const name = versionPath(keyPath, version);
    const [key] = await this.calls.call('GetCryptoKey', `KMS key ${keyName}`, (options) => this.client.getCryptoKey({ name: keyPath }, options));
    // Cloud KMS would let the primary go too, and then nothing could wrap: the interface refuses it.
    if (key.primary?.name === name) {
      throw new PreconditionFailedError(`KMS key ${keyName} version ${version} is the primary: rotate before disabling it`);
    }
    await this.calls.setVersionState(keyName, name, version, 'DISABLED');
  }

  async enableKeyVersion(keyName: string, version: number): Promise<void> {
    const keyPath = cryptoKeyPath(this.keyRing, keyName);
    await this.calls.setVersionState(keyName, versionPath(keyPath, version), version, 'ENABLED');
  }

  scheduleKeyDestruction(keyName: string): Promise<Date> {
    return scheduleKeyDestruction(this.calls, keyName);
  }

  cancelKeyDestruction(keyName: string): Promise<void> {
    return cancelKeyDestruction(this.calls, keyName);
  }

  /** Cloud KMS destroys on its own schedule: this reports what it has destroyed (gcp-destruction.ts). */
  destroyDueVersions(): Promise<number> {
    return reportDestroyedVersions(this.calls);
  }

  async health(): Promise<KmsHealth> {
    if (this.calls.isClosed) {
      return { ok: false, provider: this.provider, detail: 'closed' };
    }
    try {
      await this.calls.call('GetKeyRing', `key ring ${this.keyRing}`, (options) => this.client.getKeyRing({ name: this.keyRing }, options));
      return { ok: true, provider: this.provider, detail: `key ring ${this.keyRing} reachable` };
    } catch (error) {
      return { ok: false, provider: this.provider, detail: error instanceof Error ? error.message : String(error) };
    }
  }

  close(): Promise<void> {
    return this.calls.close();
  }
}

function assertAad(aad: Buffer): void {
  if (!Buffer.isBuffer(aad) || aad.length > MAX_AAD_LENGTH) {
    throw new BadRequestError(`associated data is at most ${MAX_AAD_LENGTH} bytes`);
  }
}

function crcMatches(data: Uint8Array, checksum: Int64Value | null | undefined): boolean {
  // Int64Value arrives as a decimal string over gRPC; a CRC32C fits a Number exactly.
  return checksum?.value !== null && checksum?.value !== undefined && Number(String(checksum.value)) === crc32c(data);
}
