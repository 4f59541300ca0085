import type { KeyManagementServiceClient, protos } from '@google-cloud/kms';
import { StrongroomError, UnavailableError } from '../errors.js';
import { gcpCallError, type GcpMethod } from './gcp-errors.js';
import { versionNumber } from './gcp-resources.js';

export type CryptoKey = protos.google.cloud.kms.v1.ICryptoKey;
export type CryptoKeyVersion = protos.google.cloud.kms.v1.ICryptoKeyVersion;

/**
 * The gcp provider's way to Cloud KMS: every call gets the time limit and the error mapping, and
 * none starts once the provider is closed. Holds the requests that several operations share.
 */
export class GcpCalls {
  private closed = false;

  constructor(
    readonly client: KeyManagementServiceClient,
    readonly keyRing: string,
    private readonly timeoutMs: number,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  async call<T>(method: GcpMethod, subject: string, run: (options: { timeout: number }) => Promise<T>): Promise<T> {
    if (this.closed) {
      throw new UnavailableError('the gcp KMS is closed');
    }
    try {
      return await run({ timeout: this.timeoutMs });
    } catch (error) {
      throw gcpCallError(error, method, subject);
    }
  }

  /** The key and all its versions (the client follows the list's pages). */
  async readKey(keyName: string, keyPath: string): Promise<{ key: CryptoKey; versions: CryptoKeyVersion[] }> {
    const subject = `KMS key ${keyName}`;
    const [[key], [versions]] = await Promise.all([
      this.call('GetCryptoKey', subject, (options) => this.client.getCryptoKey({ name: keyPath }, options)),
      this.call('ListCryptoKeyVersions', subject, (options) => this.client.listCryptoKeyVersions({ parent: keyPath }, options)),
    ]);
    return { key, versions };
  }

  versionOf(keyPath: string, entry: CryptoKeyVersion): number {
    const version = versionNumber(keyPath, entry.name);
    if (version === null) {
      throw new StrongroomError('internal', `GCP KMS listed a version of another key under ${keyPath}`);
    }
    return version;
  }

  async setVersionState(keyName: string, name: string, version: number, state: 'ENABLED' | 'DISABLED'): Promise<void> {
    await this.call('UpdateCryptoKeyVersion', `KMS key ${keyName} version ${version}`, (options) =>
      this.client.updateCryptoKeyVersion({ cryptoKeyVersion: { name, state }, updateMask: { paths: ['state'] } }, options),
    );
  }

  /** Writes the key's whole label map: the update mask `labels` replaces it, so pass everyone's labels. */
  async setLabels(subject: string, keyPath: string, labels: Record<string, string>): Promise<void> {
    await this.call('UpdateCryptoKey', subject, (options) =>
      this.client.updateCryptoKey({ cryptoKey: { name: keyPath, labels }, updateMask: { paths: ['labels'] } }, options),
    );
  }

  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.client.close();
    }
  }
}
