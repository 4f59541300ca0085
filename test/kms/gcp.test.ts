// The gcp provider against a local fake of Cloud KMS (gcp-fake-server.ts) that speaks the real gRPC
// API and checks each request. Google Cloud itself is not reachable from here and is not tested.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { status } from '@grpc/grpc-js';
import {
  BadRequestError,
  ConfigError,
  ConflictError,
  IntegrityError,
  NotFoundError,
  PreconditionFailedError,
  UnavailableError,
} from '../../src/errors.js';
import { openGcpKms } from '../../src/kms/gcp.js';
import { openKms } from '../../src/kms/index.js';
import type { Kms } from '../../src/kms/kms.js';
import { startGcpFakeServer, type GcpFakeServer } from './gcp-fake-server.js';

const DAY_SECONDS = 86_400;
const CALL_TIMEOUT_MS = 2_000;
const aad = Buffer.from('t_abc|data|1');

const folder = mkdtempSync(join(tmpdir(), 'strongroom-gcp-kms-'));
after(() => rmSync(folder, { recursive: true, force: true }));

interface Harness {
  server: GcpFakeServer;
  kms: Kms;
}

/** A fresh fake service and a provider on it; afterwards, the fake must have found no wrong request. */
async function harness(t: TestContext, destroyWaitSeconds = DAY_SECONDS): Promise<Harness> {
  const server = await startGcpFakeServer();
  const kms = await openGcpKms({ keyRing: server.keyRing, destroyWaitSeconds, client: server.client(), callTimeoutMs: CALL_TIMEOUT_MS });
  t.after(async () => {
    await kms.close();
    server.stop();
    assert.deepEqual(server.violations, []);
  });
  return { server, kms };
}

const keyPath = (server: GcpFakeServer, id: string) => `${server.keyRing}/cryptoKeys/${id}`;
const crc = (value: unknown) => Number((value as { value: string }).value);

describe('gcp KMS: keys and wrapping', () => {
  it('creates an ENCRYPT_DECRYPT GOOGLE_SYMMETRIC_ENCRYPTION key named by the documented mapping, with the configured destroy wait', async (t) => {
    const { server, kms } = await harness(t, 2 * DAY_SECONDS);
    await kms.createKey('tenant.t_abc0');
    await kms.createKey('system:backup.v2');
    const [first, second] = server.callsOf('CreateCryptoKey').map((call) => call.request);
    assert.equal(first?.parent, server.keyRing);
    assert.equal(first?.cryptoKeyId, 'tenantDt_abc0');
    assert.equal(second?.cryptoKeyId, 'systemCbackupDv2');
    const cryptoKey = first?.cryptoKey as Record<string, unknown>;
    assert.equal(cryptoKey.purpose, 'ENCRYPT_DECRYPT');
    assert.deepEqual(cryptoKey.versionTemplate, { algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION', protectionLevel: 'SOFTWARE' });
    assert.deepEqual(cryptoKey.destroyScheduledDuration, { seconds: String(2 * DAY_SECONDS), nanos: 0 });
    const versions = await kms.listKeyVersions('tenant.t_abc0');
    assert.deepEqual(versions.map(({ version, state, primary }) => ({ version, state, primary })), [{ version: 1, state: 'enabled', primary: true }]);
  });

  it('refuses to create a key whose name exists with ConflictError', async (t) => {
    const { kms } = await harness(t);
    await kms.createKey('tenant.a');
    await assert.rejects(kms.createKey('tenant.a'), ConflictError);
  });

  it('wraps with Encrypt on the key (not a version), sending the AAD and both CRC32Cs, into 0x47 | version | ciphertext', async (t) => {
    const { server, kms } = await harness(t);
    await kms.createKey('tenant.a');
    const dataKey = randomBytes(32);
    const wrapped = await kms.wrapKey('tenant.a', dataKey, aad);

    const [encrypt] = server.callsOf('Encrypt').map((call) => call.request);
    assert.equal(encrypt?.name, keyPath(server, 'tenantDa'));
    assert.deepEqual(encrypt?.plaintext, dataKey);
    assert.deepEqual(encrypt?.additionalAuthenticatedData, aad);
    assert.ok(crc(encrypt?.plaintextCrc32c) > 0 && crc(encrypt?.additionalAuthenticatedDataCrc32c) > 0);
    assert.equal(wrapped[0], 0x47);
    assert.equal(wrapped.readUInt32BE(1), 1);
    assert.equal(wrapped.includes(dataKey), false);

    assert.deepEqual(await kms.unwrapKey('tenant.a', wrapped, aad), dataKey);
    const [decrypt] = server.callsOf('Decrypt').map((call) => call.request);
    assert.equal(decrypt?.name, keyPath(server, 'tenantDa'));
    assert.deepEqual(decrypt?.ciphertext, wrapped.subarray(5));
    assert.deepEqual(decrypt?.additionalAuthenticatedData, aad);
    assert.ok(crc(decrypt?.ciphertextCrc32c) > 0);
  });

  it('refuses a wrong AAD, a flipped ciphertext byte, a bad format byte, a short input or another key with one IntegrityError message', async (t) => {
    const { kms } = await harness(t);
    await kms.createKey('tenant.a');
    await kms.createKey('tenant.b');
    const wrapped = await kms.wrapKey('tenant.a', randomBytes(32), aad);
    const flipped = Buffer.from(wrapped);
    flipped[flipped.length - 3] = (flipped[flipped.length - 3] ?? 0) ^ 1;
    const badFormat = Buffer.from(wrapped);
    badFormat[0] = 0x01;
    const attempts: [string, Buffer, Buffer][] = [
      ['tenant.a', wrapped, Buffer.from('t_abc|data|2')],
      ['tenant.a', flipped, aad],
      ['tenant.a', badFormat, aad],
      ['tenant.a', wrapped.subarray(0, 5), aad],
      ['tenant.b', wrapped, aad],
    ];
    for (const [name, input, associated] of attempts) {
      await assert.rejects(kms.unwrapKey(name, input, associated), (error: unknown) => {
        assert.ok(error instanceof IntegrityError);
        assert.equal(error.message, 'wrapped key failed authentication');
        return true;
      });
    }
  });

  it('detects answers corrupted on the way: ciphertext CRC32C, unverified request checksums, another key’s version, plaintext CRC32C', async (t) => {
    const { server, kms } = await harness(t);
    await kms.createKey('tenant.a');
    const corruptions: ((response: Record<string, unknown>) => void)[] = [
      (response) => (response.ciphertextCrc32c = { value: '12345' }),
      (response) => (response.verifiedPlaintextCrc32c = false),
      (response) => (response.verifiedAdditionalAuthenticatedDataCrc32c = false),
      (response) => (response.name = `${keyPath(server, 'tenantDb')}/cryptoKeyVersions/1`),
    ];
    for (const corrupt of corruptions) {
      server.tamperNext('Encrypt', corrupt);
      await assert.rejects(kms.wrapKey('tenant.a', randomBytes(32), aad), IntegrityError);
    }
    const wrapped = await kms.wrapKey('tenant.a', randomBytes(32), aad);
    server.tamperNext('Decrypt', (response) => {
      const plaintext = response.plaintext as Buffer;
      plaintext[0] = (plaintext[0] ?? 0) ^ 1;
    });
    await assert.rejects(kms.unwrapKey('tenant.a', wrapped, aad), IntegrityError);
  });

  it('refuses a data key over 1024 bytes, AAD over 64 KiB and names Cloud KMS cannot hold, before any call', async (t) => {
    const { server, kms } = await harness(t);
    await assert.rejects(kms.wrapKey('tenant.a', Buffer.alloc(1025), aad), BadRequestError);
    await assert.rejects(kms.wrapKey('tenant.a', Buffer.alloc(0), aad), BadRequestError);
    await assert.rejects(kms.wrapKey('tenant.a', randomBytes(32), Buffer.alloc(65_537)), BadRequestError);
    await assert.rejects(kms.createKey(`tenant.${'a'.repeat(57)}`), BadRequestError);
    await assert.rejects(kms.createKey('Tenant.a'), BadRequestError);
    await assert.rejects(kms.disableKeyVersion('tenant.a', 0), BadRequestError);
    assert.equal(server.calls.length, 0);
  });

  it('answers NotFoundError for a key that does not exist', async (t) => {
    const { kms } = await harness(t);
    await assert.rejects(kms.wrapKey('tenant.none', randomBytes(32), aad), NotFoundError);
    await assert.rejects(kms.rotateKey('tenant.none'), NotFoundError);
    await assert.rejects(kms.listKeyVersions('tenant.none'), NotFoundError);
    await assert.rejects(kms.scheduleKeyDestruction('tenant.none'), NotFoundError);
  });
});

describe('gcp KMS: versions', () => {
  it('rotates to a new primary that wraps, while older versions still unwrap, and lists every version across pages', async (t) => {
    const { server, kms } = await harness(t);
    await kms.createKey('tenant.a');
    const dataKey = randomBytes(32);
    const first = await kms.wrapKey('tenant.a', dataKey, aad);
    assert.equal(await kms.rotateKey('tenant.a'), 2);
    assert.equal(await kms.rotateKey('tenant.a'), 3);
    assert.deepEqual(
      server.callsOf('UpdateCryptoKeyPrimaryVersion').map((call) => [call.request.name, call.request.cryptoKeyVersionId]),
      [
        [keyPath(server, 'tenantDa'), '2'],
        [keyPath(server, 'tenantDa'), '3'],
      ],
    );
    assert.equal((await kms.wrapKey('tenant.a', dataKey, aad)).readUInt32BE(1), 3);
    assert.deepEqual(await kms.unwrapKey('tenant.a', first, aad), dataKey);

    // The fake pages by two, so three versions take two ListCryptoKeyVersions pages.
    const versions = await kms.listKeyVersions('tenant.a');
    assert.deepEqual(
      versions.map(({ version, state, primary }) => ({ version, state, primary })),
      [
        { version: 1, state: 'enabled', primary: false },
        { version: 2, state: 'enabled', primary: false },
        { version: 3, state: 'enabled', primary: true },
      ],
    );
    assert.ok(versions.every((entry) => Math.abs(entry.createdAt.getTime() - Date.now()) < 60_000));
    assert.ok(server.callsOf('ListCryptoKeyVersions').some((call) => call.request.pageToken !== ''));
  });

  it('disables a non-primary version with an update mask of state, so it stops unwrapping until enabled; the primary cannot be disabled', async (t) => {
    const { server, kms } = await harness(t);
    await kms.createKey('tenant.a');
    const dataKey = randomBytes(32);
    const wrapped = await kms.wrapKey('tenant.a', dataKey, aad);
    await kms.rotateKey('tenant.a');

    await kms.disableKeyVersion('tenant.a', 1);
    const [update] = server.callsOf('UpdateCryptoKeyVersion').map((call) => call.request);
    assert.deepEqual(update?.updateMask, { paths: ['state'] });
    assert.equal((update?.cryptoKeyVersion as { name: string }).name, `${keyPath(server, 'tenantDa')}/cryptoKeyVersions/1`);
    assert.equal((update?.cryptoKeyVersion as { state: string }).state, 'DISABLED');
    assert.deepEqual((await kms.listKeyVersions('tenant.a')).map((entry) => entry.state), ['disabled', 'enabled']);
    await assert.rejects(kms.unwrapKey('tenant.a', wrapped, aad), PreconditionFailedError);

    await kms.enableKeyVersion('tenant.a', 1);
    assert.deepEqual(await kms.unwrapKey('tenant.a', wrapped, aad), dataKey);

    await assert.rejects(kms.disableKeyVersion('tenant.a', 2), PreconditionFailedError);
    assert.equal(server.callsOf('UpdateCryptoKeyVersion').length, 2);
    await assert.rejects(kms.enableKeyVersion('tenant.a', 9), NotFoundError);
  });
});

describe('gcp KMS: scheduled destruction', () => {
  it('schedules every version at the key’s destroy time; from then on nothing wraps or unwraps, and nothing is reported destroyed yet', async (t) => {
    const { server, kms } = await harness(t);
    await kms.createKey('tenant.a');
    const wrapped = await kms.wrapKey('tenant.a', randomBytes(32), aad);
    await kms.rotateKey('tenant.a');

    const before = server.now();
    const destroyAt = await kms.scheduleKeyDestruction('tenant.a');
    assert.ok(Math.abs(destroyAt.getTime() - (before + DAY_SECONDS * 1000)) < 5_000);
    assert.equal(server.callsOf('DestroyCryptoKeyVersion').length, 2);
    assert.deepEqual((await kms.listKeyVersions('tenant.a')).map((entry) => entry.state), ['destroy_scheduled', 'destroy_scheduled']);
    await assert.rejects(kms.wrapKey('tenant.a', randomBytes(32), aad), PreconditionFailedError);
    await assert.rejects(kms.unwrapKey('tenant.a', wrapped, aad), PreconditionFailedError);
    // Cloud KMS itself would add a version to this key: the provider refuses, so nothing outlives the purge.
    await assert.rejects(kms.rotateKey('tenant.a'), PreconditionFailedError);
    assert.equal(server.callsOf('CreateCryptoKeyVersion').length, 1);
    assert.equal(await kms.destroyDueVersions(), 0);

    // A retry (a purge job resumed after a crash) gets the same time and schedules nothing again.
    assert.deepEqual(await kms.scheduleKeyDestruction('tenant.a'), destroyAt);
    assert.equal(server.callsOf('DestroyCryptoKeyVersion').length, 2);
  });

  it('cancels by restoring every version as it was: restored versions come back disabled, so the enabled ones are enabled again', async (t) => {
    const { server, kms } = await harness(t);
    await kms.createKey('tenant.a');
    const dataKey = randomBytes(32);
    await kms.rotateKey('tenant.a');
    const wrapped = await kms.wrapKey('tenant.a', dataKey, aad);
    await kms.disableKeyVersion('tenant.a', 1);
    const fakeKey = server.ring.key(keyPath(server, 'tenantDa'));
    fakeKey.labels = { team: 'payments' };

    await kms.scheduleKeyDestruction('tenant.a');
    assert.deepEqual(fakeKey.labels, { team: 'payments', strongroom_destroy: 'scheduled', strongroom_disabled_before: '1' });
    await kms.cancelKeyDestruction('tenant.a');

    assert.equal(server.callsOf('RestoreCryptoKeyVersion').length, 2);
    assert.deepEqual(
      (await kms.listKeyVersions('tenant.a')).map(({ version, state, primary }) => ({ version, state, primary })),
      [
        { version: 1, state: 'disabled', primary: false },
        { version: 2, state: 'enabled', primary: true },
      ],
    );
    assert.deepEqual(await kms.unwrapKey('tenant.a', wrapped, aad), dataKey);
    assert.deepEqual(fakeKey.labels, { team: 'payments' });
    assert.ok(server.callsOf('UpdateCryptoKey').every((call) => JSON.stringify(call.request.updateMask) === '{"paths":["labels"]}'));
    await assert.rejects(kms.cancelKeyDestruction('tenant.a'), PreconditionFailedError);
  });

  it('after the wait Cloud KMS has destroyed the versions: reported once, too late to cancel, nothing unwraps', async (t) => {
    const { server, kms } = await harness(t);
    await kms.createKey('tenant.a');
    await kms.createKey('tenant.b');
    const wrapped = await kms.wrapKey('tenant.a', randomBytes(32), aad);
    await kms.rotateKey('tenant.a');
    await kms.scheduleKeyDestruction('tenant.a');

    server.advanceClock(DAY_SECONDS * 1000 + 1_000);
    assert.deepEqual((await kms.listKeyVersions('tenant.a')).map((entry) => entry.state), ['destroyed', 'destroyed']);
    assert.equal(await kms.destroyDueVersions(), 2);
    assert.equal(await kms.destroyDueVersions(), 0);
    assert.equal(server.callsOf('ListCryptoKeys')[0]?.request.filter, 'labels.strongroom_destroy=scheduled');
    await assert.rejects(kms.cancelKeyDestruction('tenant.a'), PreconditionFailedError);
    await assert.rejects(kms.unwrapKey('tenant.a', wrapped, aad), PreconditionFailedError);
    await assert.rejects(kms.scheduleKeyDestruction('tenant.a'), PreconditionFailedError);
    await assert.rejects(kms.rotateKey('tenant.a'), PreconditionFailedError);
    assert.deepEqual((await kms.listKeyVersions('tenant.b')).map((entry) => entry.state), ['enabled']);
  });
});

describe('gcp KMS: errors and availability', () => {
  it('rides over one UNAVAILABLE: the client library retries', async (t) => {
    const { server, kms } = await harness(t);
    await kms.createKey('tenant.a');
    server.failNext('Encrypt', status.UNAVAILABLE);
    const wrapped = await kms.wrapKey('tenant.a', randomBytes(32), aad);
    assert.equal(wrapped[0], 0x47);
    assert.equal(server.callsOf('Encrypt').length, 2);
  });

  it('gives UnavailableError within the call timeout when the service keeps answering UNAVAILABLE or DEADLINE_EXCEEDED', async (t) => {
    const { server, kms } = await harness(t);
    await kms.createKey('tenant.a');
    for (const code of [status.UNAVAILABLE, status.DEADLINE_EXCEEDED]) {
      server.failNext('Encrypt', code, 1_000);
      const started = Date.now();
      await assert.rejects(kms.wrapKey('tenant.a', randomBytes(32), aad), UnavailableError);
      // Bounded by our deadline, not the client library's 60 s of retries; generous, as machines get busy.
      assert.ok(Date.now() - started < CALL_TIMEOUT_MS * 5, `${Date.now() - started} ms`);
      server.clearFailures();
    }
  });

  it('gives UnavailableError and an unhealthy report while the service is down, and works again once it is back', async (t) => {
    const { server, kms } = await harness(t);
    await kms.createKey('tenant.a');
    assert.deepEqual(await kms.health(), { ok: true, provider: 'gcp', detail: `key ring ${server.keyRing} reachable` });
    const port = server.port;
    server.stop();
    await assert.rejects(kms.wrapKey('tenant.a', randomBytes(32), aad), UnavailableError);
    assert.equal((await kms.health()).ok, false);

    await server.start(port);
    const dataKey = randomBytes(32);
    assert.deepEqual(await kms.unwrapKey('tenant.a', await kms.wrapKey('tenant.a', dataKey, aad), aad), dataKey);
    assert.equal((await kms.health()).ok, true);
  });

  it('maps PERMISSION_DENIED and UNAUTHENTICATED to ConfigErrors naming what is missing, and quotes nothing the service said', async (t) => {
    const { server, kms } = await harness(t);
    await kms.createKey('tenant.a');
    server.failNext('Encrypt', status.PERMISSION_DENIED);
    await assert.rejects(kms.wrapKey('tenant.a', randomBytes(32), aad), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /cloudkms\.cryptoKeyVersions\.useToEncrypt/);
      assert.doesNotMatch(error.message, /injected/);
      return true;
    });
    server.failNext('Decrypt', status.UNAUTHENTICATED);
    const wrapped = await kms.wrapKey('tenant.a', randomBytes(32), aad);
    await assert.rejects(kms.unwrapKey('tenant.a', wrapped, aad), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.key, 'kms.gcp.credentialsFile');
      return true;
    });
    server.failNext('GetKeyRing', status.PERMISSION_DENIED);
    assert.match((await kms.health()).detail, /cloudkms\.keyRings\.get/);
  });

  it('refuses every call once closed, and reports itself closed', async (t) => {
    const { kms } = await harness(t);
    await kms.close();
    await assert.rejects(kms.createKey('tenant.a'), UnavailableError);
    assert.deepEqual(await kms.health(), { ok: false, provider: 'gcp', detail: 'closed' });
  });
});

describe('gcp KMS: configuration', () => {
  it('refuses a destroy wait under Cloud KMS’s 24 hours, a malformed key ring or endpoint, and an unreadable credentials file', async () => {
    const keyRing = 'projects/p/locations/global/keyRings/r';
    await assert.rejects(openGcpKms({ keyRing, destroyWaitSeconds: 3_600 }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.key, 'kms.destroyWaitSeconds');
      assert.match(error.message, /24 hours/);
      return true;
    });
    await assert.rejects(openGcpKms({ keyRing: 'projects/p/keyRings/r', destroyWaitSeconds: DAY_SECONDS }), ConfigError);
    await assert.rejects(openGcpKms({ keyRing, destroyWaitSeconds: DAY_SECONDS, apiEndpoint: 'https://kms:443/' }), ConfigError);
    await assert.rejects(
      openGcpKms({ keyRing, destroyWaitSeconds: DAY_SECONDS, credentialsFile: join(folder, 'missing.json') }),
      (error: unknown) => error instanceof ConfigError && error.key === 'kms.gcp.credentialsFile',
    );
  });

  it('openKms needs kms.gcp.keyRing for the gcp provider', async () => {
    await assert.rejects(
      openKms({ provider: 'gcp', gcp: { keyRing: null, credentialsFile: null, apiEndpoint: null }, destroyWaitSeconds: DAY_SECONDS }),
      (error: unknown) => error instanceof ConfigError && error.key === 'kms.gcp.keyRing',
    );
  });
});
