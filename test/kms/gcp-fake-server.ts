// A local stand-in for Google Cloud KMS: a real gRPC server for google.cloud.kms.v1.KeyManagementService,
// built from the .proto files that @google-cloud/kms ships, so the client library talks to it exactly
// as it talks to Google. It checks every request the provider must get right (resource names, the
// routing header, AAD and CRC32C fields, update masks, the key's settings) and refuses the request
// with INVALID_ARGUMENT, and notes it in `violations`, when one is wrong. Faults and a clock the test
// moves are at hand. gcp-fake-keys.ts holds the KMS semantics.
import { crc32c } from '@aws-crypto/crc32c';
import { KeyManagementServiceClient } from '@google-cloud/kms';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { jwtVerify } from 'jose';
import { FakeKeyRing, FakeStatus, renderKey, renderVersion, timestamp } from './gcp-fake-keys.js';

type Message = Record<string, unknown>;

const KEY_RING = 'projects/strongroom-test/locations/europe-west1/keyRings/strongroom';

/** Every method the provider may call; any other is UNIMPLEMENTED, as the fake does not model it. */
export type FakeMethod =
  | 'GetKeyRing'
  | 'CreateCryptoKey'
  | 'GetCryptoKey'
  | 'ListCryptoKeys'
  | 'UpdateCryptoKey'
  | 'UpdateCryptoKeyPrimaryVersion'
  | 'CreateCryptoKeyVersion'
  | 'ListCryptoKeyVersions'
  | 'UpdateCryptoKeyVersion'
  | 'DestroyCryptoKeyVersion'
  | 'RestoreCryptoKeyVersion'
  | 'Encrypt'
  | 'Decrypt';

export interface FakeCall {
  method: FakeMethod;
  request: Message;
  metadata: grpc.Metadata;
}

export interface FakeServerOptions {
  /** Serve TLS with this certificate (a test CA's); plaintext gRPC otherwise. */
  tls?: { certFile: string; keyFile: string };
  /** Require every call to carry a self-signed JWT of this service account, as Google's client libraries send. */
  serviceAccount?: { email: string; publicKey: KeyObject };
}

const KMS_PACKAGE = createRequire(import.meta.url).resolve('@google-cloud/kms/package.json');
const KMS_PROTOS = join(dirname(KMS_PACKAGE), 'build', 'protos');
/** google/api, google/protobuf…: from the google-gax that @google-cloud/kms itself loads (build/src/index.js). */
const COMMON_PROTOS = join(dirname(createRequire(KMS_PACKAGE).resolve('google-gax')), '..', 'protos');
/** Items per list page when the request names none (Google picks its own): small, so lists take several pages. */
const PAGE_SIZE = 2;
const KEY_ID = /^[a-zA-Z0-9_-]{1,63}$/;
const LABEL_KEY = /^[a-z][a-z0-9_-]{0,62}$/;
const LABEL_VALUE = /^[a-z0-9_-]{0,63}$/;
const ROUTING: Record<FakeMethod, string> = {
  GetKeyRing: 'name',
  CreateCryptoKey: 'parent',
  GetCryptoKey: 'name',
  ListCryptoKeys: 'parent',
  UpdateCryptoKey: 'crypto_key.name',
  UpdateCryptoKeyPrimaryVersion: 'name',
  CreateCryptoKeyVersion: 'parent',
  ListCryptoKeyVersions: 'parent',
  UpdateCryptoKeyVersion: 'crypto_key_version.name',
  DestroyCryptoKeyVersion: 'name',
  RestoreCryptoKeyVersion: 'name',
  Encrypt: 'name',
  Decrypt: 'name',
};

class Violation extends Error {}

export class GcpFakeServer {
  readonly calls: FakeCall[] = [];
  readonly violations: string[] = [];
  readonly ring: FakeKeyRing;
  private clockOffsetMs = 0;
  private server: grpc.Server | null = null;
  private boundPort = 0;
  private readonly failures: { method: FakeMethod; code: grpc.status; times: number }[] = [];
  private readonly tampers: { method: FakeMethod; change: (response: Message) => void }[] = [];
  private readonly service: grpc.ServiceDefinition;

  constructor(private readonly opts: FakeServerOptions = {}) {
    this.ring = new FakeKeyRing(KEY_RING, () => this.now());
    const definition = loadSync(join(KMS_PROTOS, 'google/cloud/kms/v1/service.proto'), {
      includeDirs: [KMS_PROTOS, COMMON_PROTOS],
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      google: { cloud: { kms: { v1: { KeyManagementService: grpc.ServiceClientConstructor } } } };
    };
    this.service = loaded.google.cloud.kms.v1.KeyManagementService.service;
  }

  get keyRing(): string {
    return this.ring.name;
  }

  get port(): number {
    return this.boundPort;
  }

  now(): number {
    return Date.now() + this.clockOffsetMs;
  }

  /** Moves the server's clock on: versions whose destroy time passes are destroyed. */
  advanceClock(ms: number): void {
    this.clockOffsetMs += ms;
  }

  /** The next `times` calls of `method` fail with `code` (the client retries UNAVAILABLE on its own). */
  failNext(method: FakeMethod, code: grpc.status, times = 1): void {
    this.failures.push({ method, code, times });
  }

  clearFailures(): void {
    this.failures.length = 0;
  }

  /** Changes the next response of `method` on its way out, as a corrupting network would. */
  tamperNext(method: FakeMethod, change: (response: Message) => void): void {
    this.tampers.push({ method, change });
  }

  callsOf(method: FakeMethod): FakeCall[] {
    return this.calls.filter((call) => call.method === method);
  }

  async start(port = this.boundPort): Promise<void> {
    const server = new grpc.Server();
    server.addService(this.service, this.handlers());
    const credentials =
      this.opts.tls === undefined
        ? grpc.ServerCredentials.createInsecure()
        : grpc.ServerCredentials.createSsl(null, [
            { cert_chain: await readFile(this.opts.tls.certFile), private_key: await readFile(this.opts.tls.keyFile) },
          ]);
    this.boundPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, credentials, (error, bound) => (error === null ? resolve(bound) : reject(error))),
    );
    this.server = server;
  }

  /** Drops the listener and every connection at once, as a crashed or unreachable service would. */
  stop(): void {
    this.server?.forceShutdown();
    this.server = null;
  }

  /** A client that reaches this server over plaintext gRPC; only the endpoint and the credentials differ from production. */
  client(): KeyManagementServiceClient {
    return new KeyManagementServiceClient({
      apiEndpoint: '127.0.0.1',
      port: this.boundPort,
      sslCreds: grpc.credentials.createInsecure(),
      // Named, so the library does not look for Application Default Credentials to learn it.
      universeDomain: 'googleapis.com',
      // A restarted server is found again within a second, not after the default minutes of backoff.
      'grpc.max_reconnect_backoff_ms': 1000,
    });
  }

  private handlers(): grpc.UntypedServiceImplementation {
    const handlers: Record<FakeMethod, (request: Message) => Message> = {
      GetKeyRing: (request) => {
        if (request.name !== this.keyRing) {
          throw new FakeStatus(grpc.status.NOT_FOUND, `KeyRing ${String(request.name)} not found.`);
        }
        return { name: this.keyRing, createTime: timestamp(0) };
      },
      CreateCryptoKey: (request) => {
        this.expectKeyRing(request.parent);
        const id = String(request.cryptoKeyId);
        const key = request.cryptoKey as Message | null;
        const template = key?.versionTemplate as Message | null;
        const seconds = Number((key?.destroyScheduledDuration as Message | null)?.seconds ?? 0);
        expect(KEY_ID.test(id), `cryptoKeyId ${JSON.stringify(id)} is not [a-zA-Z0-9_-]{1,63}`);
        expect(key?.purpose === 'ENCRYPT_DECRYPT', `purpose is ${String(key?.purpose)}, not ENCRYPT_DECRYPT`);
        expect(template?.algorithm === 'GOOGLE_SYMMETRIC_ENCRYPTION', `algorithm is ${String(template?.algorithm)}`);
        expect(seconds >= 86_400 && seconds <= 120 * 86_400, `destroyScheduledDuration ${seconds} s is outside 24 h to 120 days`);
        expect(request.skipInitialVersionCreation === false, 'skipInitialVersionCreation is set: the key would have no version 1');
        return renderKey(this.ring.createKey(id, seconds * 1000));
      },
      GetCryptoKey: (request) => renderKey(this.ring.key(this.expectKeyName(request.name))),
      ListCryptoKeys: (request) => {
        this.expectKeyRing(request.parent);
        const filter = String(request.filter);
        const match = /^labels\.([a-z][a-z0-9_-]*)="?([a-z0-9_-]*)"?$/.exec(filter);
        expect(filter === '' || match !== null, `filter ${JSON.stringify(filter)} is not one this fake understands`);
        const keys = this.ring.allKeys().filter((key) => match === null || key.labels[match[1] ?? ''] === match[2]);
        return this.page(request, 'cryptoKeys', keys.map((key) => renderKey(key)));
      },
      UpdateCryptoKey: (request) => {
        expectMask(request, ['labels']);
        const update = request.cryptoKey as Message;
        const key = this.ring.key(this.expectKeyName(update.name));
        const labels = update.labels as Record<string, string>;
        for (const [name, value] of Object.entries(labels)) {
          expect(LABEL_KEY.test(name) && LABEL_VALUE.test(value), `label ${name}=${value} breaks Google's label rules`);
        }
        key.labels = { ...labels };
        return renderKey(key);
      },
      UpdateCryptoKeyPrimaryVersion: (request) => {
        const key = this.ring.key(this.expectKeyName(request.name));
        const id = String(request.cryptoKeyVersionId);
        expect(/^[1-9][0-9]*$/.test(id), `cryptoKeyVersionId ${JSON.stringify(id)} is not a version number`);
        this.ring.setPrimary(key, Number(id));
        return renderKey(key);
      },
      CreateCryptoKeyVersion: (request) => {
        const key = this.ring.key(this.expectKeyName(request.parent));
        const template = request.cryptoKeyVersion as Message | null;
        expect(template?.state === 'CRYPTO_KEY_VERSION_STATE_UNSPECIFIED', 'a new version is asked for in a given state');
        return renderVersion(key, this.ring.addVersion(key));
      },
      ListCryptoKeyVersions: (request) => {
        const key = this.ring.key(this.expectKeyName(request.parent));
        return this.page(request, 'cryptoKeyVersions', key.versions.map((version) => renderVersion(key, version)));
      },
      UpdateCryptoKeyVersion: (request) => {
        expectMask(request, ['state']);
        const update = request.cryptoKeyVersion as Message;
        expect(update.state === 'ENABLED' || update.state === 'DISABLED', `state ${String(update.state)} cannot be set`);
        const { key, version } = this.ring.version(this.expectVersionName(update.name));
        this.ring.setState(version, update.state as 'ENABLED' | 'DISABLED');
        return renderVersion(key, version);
      },
      DestroyCryptoKeyVersion: (request) => {
        const { key, version } = this.ring.version(this.expectVersionName(request.name));
        this.ring.scheduleDestruction(key, version);
        return renderVersion(key, version);
      },
      RestoreCryptoKeyVersion: (request) => {
        const { key, version } = this.ring.version(this.expectVersionName(request.name));
        this.ring.restore(version);
        return renderVersion(key, version);
      },
      Encrypt: (request) => {
        // The provider encrypts with the key's primary: a version name here would pin an old version.
        const key = this.ring.key(this.expectKeyName(request.name));
        const plaintext = request.plaintext as Buffer;
        const aad = request.additionalAuthenticatedData as Buffer;
        expect(plaintext.length >= 1 && plaintext.length <= 65_536, `plaintext of ${plaintext.length} bytes`);
        expectCrc(request.plaintextCrc32c, plaintext, 'plaintextCrc32c');
        expectCrc(request.additionalAuthenticatedDataCrc32c, aad, 'additionalAuthenticatedDataCrc32c');
        const { version, ciphertext } = this.ring.encrypt(key, plaintext, aad);
        return {
          name: `${key.name}/cryptoKeyVersions/${version.number}`,
          ciphertext,
          ciphertextCrc32c: { value: String(crc32c(ciphertext)) },
          verifiedPlaintextCrc32c: true,
          verifiedAdditionalAuthenticatedDataCrc32c: true,
          protectionLevel: 'SOFTWARE',
        };
      },
      Decrypt: (request) => {
        const key = this.ring.key(this.expectKeyName(request.name));
        const ciphertext = request.ciphertext as Buffer;
        const aad = request.additionalAuthenticatedData as Buffer;
        expectCrc(request.ciphertextCrc32c, ciphertext, 'ciphertextCrc32c');
        expectCrc(request.additionalAuthenticatedDataCrc32c, aad, 'additionalAuthenticatedDataCrc32c');
        const { plaintext, version } = this.ring.decrypt(key, ciphertext, aad);
        return {
          plaintext,
          plaintextCrc32c: { value: String(crc32c(plaintext)) },
          usedPrimary: version.number === key.primary,
          protectionLevel: 'SOFTWARE',
        };
      },
    };
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const [method, handle] of Object.entries(handlers) as [FakeMethod, (request: Message) => Message][]) {
      implementation[method] = (call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) => {
        this.answer(method, call, handle).then(
          (response) => callback(null, response),
          (error: unknown) => callback(this.statusOf(method, error)),
        );
      };
    }
    return implementation;
  }

  private async answer(method: FakeMethod, call: grpc.ServerUnaryCall<Message, Message>, handle: (request: Message) => Message): Promise<Message> {
    this.calls.push({ method, request: call.request, metadata: call.metadata });
    const failure = this.failures.find((entry) => entry.method === method);
    if (failure !== undefined) {
      failure.times -= 1;
      if (failure.times <= 0) {
        this.failures.splice(this.failures.indexOf(failure), 1);
      }
      throw new FakeStatus(failure.code, `injected ${grpc.status[failure.code]}`);
    }
    this.expectRoutingHeader(method, call);
    await this.expectCredentials(call.metadata);
    const response = handle(call.request);
    const tamper = this.tampers.findIndex((entry) => entry.method === method);
    if (tamper >= 0) {
      this.tampers.splice(tamper, 1)[0]?.change(response);
    }
    return response;
  }

  private statusOf(method: FakeMethod, error: unknown): Partial<grpc.StatusObject> {
    if (error instanceof FakeStatus) {
      return { code: error.code, details: error.message };
    }
    const message = error instanceof Error ? error.message : String(error);
    this.violations.push(`${method}: ${message}`);
    return { code: grpc.status.INVALID_ARGUMENT, details: `fake KMS: ${message}` };
  }

  /** gax sends the request's resource name as x-goog-request-params, which Google routes by. */
  private expectRoutingHeader(method: FakeMethod, call: grpc.ServerUnaryCall<Message, Message>): void {
    const field = ROUTING[method];
    const value = field.split('.').reduce<unknown>((message, part) => (message as Message | null)?.[camel(part)], call.request);
    const header = call.metadata.get('x-goog-request-params')[0];
    const sent = new URLSearchParams(String(header ?? '')).get(field);
    expect(sent === value, `x-goog-request-params names ${field}=${String(sent)}, the request ${String(value)}`);
  }

  private async expectCredentials(metadata: grpc.Metadata): Promise<void> {
    const account = this.opts.serviceAccount;
    if (account === undefined) {
      return;
    }
    const bearer = /^Bearer (.+)$/.exec(String(metadata.get('authorization')[0] ?? ''));
    const scope = await jwtVerify(bearer?.[1] ?? '', account.publicKey, { issuer: account.email, subject: account.email }).then(
      ({ payload }) => String(payload.scope).split(' '),
      (): string[] => [],
    );
    if (!scope.includes('https://www.googleapis.com/auth/cloudkms')) {
      throw new FakeStatus(grpc.status.UNAUTHENTICATED, 'Request had invalid authentication credentials.');
    }
  }

  private expectKeyRing(name: unknown): void {
    expect(name === this.keyRing, `parent ${String(name)} is not the key ring ${this.keyRing}`);
  }

  private expectKeyName(name: unknown): string {
    const prefix = `${this.keyRing}/cryptoKeys/`;
    const text = String(name);
    expect(text.startsWith(prefix) && KEY_ID.test(text.slice(prefix.length)), `${text} is not a CryptoKey of ${this.keyRing}`);
    return text;
  }

  private expectVersionName(name: unknown): string {
    const text = String(name);
    const match = /^(.*)\/cryptoKeyVersions\/[1-9][0-9]*$/.exec(text);
    expect(match !== null, `${text} is not a CryptoKeyVersion`);
    this.expectKeyName(match?.[1]);
    return text;
  }

  private page(request: Message, field: string, items: Message[]): Message {
    const size = Number(request.pageSize) || PAGE_SIZE;
    const start = request.pageToken === '' ? 0 : Number(request.pageToken);
    expect(Number.isInteger(start) && start >= 0 && start <= items.length, `pageToken ${String(request.pageToken)} was never issued`);
    const end = Math.min(start + size, items.length);
    return { [field]: items.slice(start, end), nextPageToken: end < items.length ? String(end) : '', totalSize: items.length };
  }
}

/** Starts a fake Cloud KMS on a free loopback port. */
export async function startGcpFakeServer(opts: FakeServerOptions = {}): Promise<GcpFakeServer> {
  const server = new GcpFakeServer(opts);
  await server.start(0);
  return server;
}

function expect(condition: boolean, violation: string): asserts condition {
  if (!condition) {
    throw new Violation(violation);
  }
}

function expectMask(request: Message, paths: string[]): void {
  const sent = (request.updateMask as Message | null)?.paths;
  expect(JSON.stringify(sent) === JSON.stringify(paths), `updateMask ${JSON.stringify(sent)}, not ${JSON.stringify(paths)}`);
}

function expectCrc(field: unknown, data: Buffer, name: string): void {
  const value = (field as Message | null)?.value;
  expect(value !== undefined && value !== null, `${name} is missing`);
  // Google answers a wrong checksum with INVALID_ARGUMENT; so do we, but it is the client's bug, so it is also noted.
  expect(Number(value) === crc32c(data), `${name} ${String(value)} is not the CRC32C of the ${data.length} bytes sent`);
}

function camel(snake: string): string {
  return snake.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
}
