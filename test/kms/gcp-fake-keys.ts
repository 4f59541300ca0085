// The Cloud KMS semantics behind the fake server (gcp-fake-server.ts): one key ring of symmetric keys
// with versions, states, a primary, labels and scheduled destruction on a clock the test moves. Real
// AES-256-GCM under real keys held here, so ciphertexts authenticate and AAD is bound as on Google.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';

export type VersionState = 'ENABLED' | 'DISABLED' | 'DESTROY_SCHEDULED' | 'DESTROYED';

export interface FakeVersion {
  number: number;
  state: VersionState;
  /** Null once destroyed: the material is gone. */
  material: Buffer | null;
  createTime: number;
  destroyTime: number | null;
  destroyEventTime: number | null;
}

export interface FakeKey {
  name: string;
  /** Identifies the key inside its ciphertexts, as Google's do. */
  tag: Buffer;
  createTime: number;
  destroyScheduledMs: number;
  labels: Record<string, string>;
  primary: number;
  versions: FakeVersion[];
}

/** An error the server turns into this gRPC status. */
export class FakeStatus extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

const MAGIC = Buffer.from('FAKEKMS1');
const TAG_LENGTH = 8;
const IV_LENGTH = 12;
const GCM_TAG_LENGTH = 16;
const HEADER_LENGTH = MAGIC.length + TAG_LENGTH + 4;

export class FakeKeyRing {
  private readonly keys = new Map<string, FakeKey>();

  constructor(
    readonly name: string,
    private readonly now: () => number,
  ) {}

  createKey(id: string, destroyScheduledMs: number): FakeKey {
    const name = `${this.name}/cryptoKeys/${id}`;
    if (this.keys.has(name)) {
      throw new FakeStatus(status.ALREADY_EXISTS, `CryptoKey ${name} already exists.`);
    }
    const key: FakeKey = { name, tag: randomBytes(TAG_LENGTH), createTime: this.now(), destroyScheduledMs, labels: {}, primary: 1, versions: [] };
    key.versions.push(this.newVersion(1));
    this.keys.set(name, key);
    return key;
  }

  key(name: string): FakeKey {
    const key = this.keys.get(name);
    if (key === undefined) {
      throw new FakeStatus(status.NOT_FOUND, `CryptoKey ${name} not found.`);
    }
    this.settle(key);
    return key;
  }

  allKeys(): FakeKey[] {
    return [...this.keys.keys()].map((name) => this.key(name));
  }

  version(name: string): { key: FakeKey; version: FakeVersion } {
    const match = /^(.*)\/cryptoKeyVersions\/([0-9]+)$/.exec(name);
    const key = this.key(match?.[1] ?? '');
    const version = key.versions.find((entry) => entry.number === Number(match?.[2]));
    if (version === undefined) {
      throw new FakeStatus(status.NOT_FOUND, `CryptoKeyVersion ${name} not found.`);
    }
    return { key, version };
  }

  addVersion(key: FakeKey): FakeVersion {
    const version = this.newVersion(key.versions.length + 1);
    key.versions.push(version);
    return version;
  }

  setPrimary(key: FakeKey, number: number): void {
    const version = key.versions.find((entry) => entry.number === number);
    if (version === undefined) {
      throw new FakeStatus(status.NOT_FOUND, `CryptoKeyVersion ${key.name}/cryptoKeyVersions/${number} not found.`);
    }
    if (version.state !== 'ENABLED') {
      throw new FakeStatus(status.FAILED_PRECONDITION, `${key.name}/cryptoKeyVersions/${number} is not enabled.`);
    }
    key.primary = number;
  }

  setState(version: FakeVersion, state: 'ENABLED' | 'DISABLED'): void {
    if (version.state !== 'ENABLED' && version.state !== 'DISABLED') {
      throw new FakeStatus(status.FAILED_PRECONDITION, `the version is ${version.state}.`);
    }
    version.state = state;
  }

  scheduleDestruction(key: FakeKey, version: FakeVersion): void {
    if (version.state !== 'ENABLED' && version.state !== 'DISABLED') {
      throw new FakeStatus(status.FAILED_PRECONDITION, `the version is ${version.state}.`);
    }
    version.state = 'DESTROY_SCHEDULED';
    version.destroyTime = this.now() + key.destroyScheduledMs;
  }

  restore(version: FakeVersion): void {
    if (version.state !== 'DESTROY_SCHEDULED') {
      throw new FakeStatus(status.FAILED_PRECONDITION, `the version is ${version.state}.`);
    }
    version.state = 'DISABLED';
    version.destroyTime = null;
  }

  encrypt(key: FakeKey, plaintext: Buffer, aad: Buffer): { version: FakeVersion; ciphertext: Buffer } {
    const version = key.versions.find((entry) => entry.number === key.primary);
    if (version === undefined || version.state !== 'ENABLED' || version.material === null) {
      throw new FakeStatus(status.FAILED_PRECONDITION, `The primary version of ${key.name} is not enabled.`);
    }
    const header = Buffer.alloc(HEADER_LENGTH);
    MAGIC.copy(header);
    key.tag.copy(header, MAGIC.length);
    header.writeUInt32BE(version.number, MAGIC.length + TAG_LENGTH);
    const iv = randomBytes(IV_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', version.material, iv);
    cipher.setAAD(aad);
    const ciphertext = Buffer.concat([header, iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return { version, ciphertext };
  }

  decrypt(key: FakeKey, ciphertext: Buffer, aad: Buffer): { plaintext: Buffer; version: FakeVersion } {
    const invalid = new FakeStatus(status.INVALID_ARGUMENT, 'Decryption failed: the ciphertext is invalid.');
    if (ciphertext.length < HEADER_LENGTH + IV_LENGTH + GCM_TAG_LENGTH || !ciphertext.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw invalid;
    }
    if (!ciphertext.subarray(MAGIC.length, MAGIC.length + TAG_LENGTH).equals(key.tag)) {
      throw new FakeStatus(status.INVALID_ARGUMENT, "Decryption failed: verify that 'name' refers to the correct CryptoKey.");
    }
    const number = ciphertext.readUInt32BE(MAGIC.length + TAG_LENGTH);
    const version = key.versions.find((entry) => entry.number === number);
    if (version === undefined) {
      throw invalid;
    }
    if (version.state !== 'ENABLED' || version.material === null) {
      throw new FakeStatus(status.FAILED_PRECONDITION, `${key.name}/cryptoKeyVersions/${number} is not enabled, current state is: ${version.state}.`);
    }
    const iv = ciphertext.subarray(HEADER_LENGTH, HEADER_LENGTH + IV_LENGTH);
    const decipher = createDecipheriv('aes-256-gcm', version.material, iv);
    decipher.setAAD(aad);
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - GCM_TAG_LENGTH));
    try {
      const body = ciphertext.subarray(HEADER_LENGTH + IV_LENGTH, ciphertext.length - GCM_TAG_LENGTH);
      return { plaintext: Buffer.concat([decipher.update(body), decipher.final()]), version };
    } catch {
      throw invalid;
    }
  }

  /** Google destroys a version when its destroy time comes; here, when anyone looks after that. */
  private settle(key: FakeKey): void {
    for (const version of key.versions) {
      if (version.state === 'DESTROY_SCHEDULED' && version.destroyTime !== null && version.destroyTime <= this.now()) {
        version.state = 'DESTROYED';
        version.destroyEventTime = version.destroyTime;
        version.material?.fill(0);
        version.material = null;
      }
    }
  }

  private newVersion(number: number): FakeVersion {
    return { number, state: 'ENABLED', material: randomBytes(32), createTime: this.now(), destroyTime: null, destroyEventTime: null };
  }
}

type Message = Record<string, unknown>;

/** A CryptoKey message, as the service answers it. */
export function renderKey(key: FakeKey): Message {
  const primary = key.versions.find((version) => version.number === key.primary);
  return {
    name: key.name,
    primary: primary === undefined ? null : renderVersion(key, primary),
    purpose: 'ENCRYPT_DECRYPT',
    createTime: timestamp(key.createTime),
    versionTemplate: { algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION', protectionLevel: 'SOFTWARE' },
    labels: { ...key.labels },
    destroyScheduledDuration: { seconds: String(key.destroyScheduledMs / 1000), nanos: 0 },
  };
}

/** A CryptoKeyVersion message: destroyTime only while scheduled, destroyEventTime once destroyed, as Google's. */
export function renderVersion(key: FakeKey, version: FakeVersion): Message {
  return {
    name: `${key.name}/cryptoKeyVersions/${version.number}`,
    state: version.state,
    protectionLevel: 'SOFTWARE',
    algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
    createTime: timestamp(version.createTime),
    generateTime: timestamp(version.createTime),
    destroyTime: version.state === 'DESTROY_SCHEDULED' && version.destroyTime !== null ? timestamp(version.destroyTime) : null,
    destroyEventTime: version.destroyEventTime === null ? null : timestamp(version.destroyEventTime),
  };
}

export function timestamp(ms: number): Message {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}
