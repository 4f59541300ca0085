import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect, promisify } from 'node:util';
import pkcs11js from 'pkcs11js';
import type { PKCS11 } from 'pkcs11js';
import { loadConfig, maskedConfig } from '../../src/config/load.js';
import { ConfigError, ConflictError, IntegrityError, NotFoundError, PreconditionFailedError, UnavailableError } from '../../src/errors.js';
import { openKms } from '../../src/kms/index.js';
import type { Kms } from '../../src/kms/kms.js';
import { openPkcs11Kms, type Pkcs11KmsOptions } from '../../src/kms/pkcs11.js';
import { createSoftHsmToken } from '../support/softhsm.js';
import { describeKmsConformance } from './conformance.js';

const token = await createSoftHsmToken();
after(() => token.remove());

const aad = Buffer.from('tenant-a|data-key|1');
const newKeyName = () => `tenant.p11-${randomBytes(6).toString('hex')}`;

const openProvider = (options: Partial<Pkcs11KmsOptions> = {}): Promise<Kms> =>
  openPkcs11Kms({ library: token.library, tokenLabel: token.tokenLabel, pin: token.pin, sessions: 4, ...options });

/** A clock each test moves on its own. */
function movableClock(): { clock: () => Date; advance(ms: number): void } {
  let offsetMs = 0;
  return {
    clock: () => new Date(Date.now() + offsetMs),
    advance: (ms) => {
      offsetMs += ms;
    },
  };
}

describeKmsConformance('pkcs11 (SoftHSM2)', async () => {
  const { clock, advance } = movableClock();
  const kms = await openProvider({ clock });
  return { kms, advanceClock: advance, close: () => kms.close() };
});

/** A session of our own on the token, through pkcs11js directly, as an attacker holding the PIN would have. */
function directSession(): { pkcs11: PKCS11; session: Buffer; close(): void } {
  const pkcs11 = new pkcs11js.PKCS11();
  pkcs11.load(token.library);
  try {
    pkcs11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (error) {
    // The provider opened in this process already initialized the (shared) module.
    assert.match(String(error), /CKR_CRYPTOKI_ALREADY_INITIALIZED/);
  }
  const slot = pkcs11.C_GetSlotList(true).find((candidate) => pkcs11.C_GetTokenInfo(candidate).label.trimEnd() === token.tokenLabel);
  assert.ok(slot, 'the test token is present');
  const session = pkcs11.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
  try {
    pkcs11.C_Login(session, pkcs11js.CKU_USER, token.pin);
  } catch (error) {
    assert.match(String(error), /CKR_USER_ALREADY_LOGGED_IN/);
  }
  return { pkcs11, session, close: () => pkcs11.C_CloseSession(session) };
}

function findKek(pkcs11: PKCS11, session: Buffer, label: string): Buffer {
  pkcs11.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_LABEL, value: label },
  ]);
  const found = pkcs11.C_FindObjects(session, 10);
  pkcs11.C_FindObjectsFinal(session);
  assert.equal(found.length, 1, `exactly one key object is labelled ${label}`);
  return found[0] as Buffer;
}

describe('pkcs11 KMS: key-encryption keys never leave the token', () => {
  it('wraps in the documented 0x02 | version | iv | ciphertext | tag format, AES-256-GCM computed by the token key', async () => {
    const kms = await openProvider();
    const direct = directSession();
    try {
      const name = newKeyName();
      await kms.createKey(name);
      await kms.rotateKey(name);
      const dataKey = randomBytes(32);
      const wrapped = await kms.wrapKey(name, dataKey, aad);
      assert.equal(wrapped.length, 1 + 4 + 12 + 32 + 16);
      assert.equal(wrapped[0], 0x02);
      assert.equal(wrapped.readUInt32BE(1), 2);
      const { pkcs11, session } = direct;
      const kek = findKek(pkcs11, session, `${name}#v2`);
      const parameter: pkcs11js.GcmParams = { type: pkcs11js.CK_PARAMS_GCM, iv: wrapped.subarray(5, 17), ivBits: 96, aad, tagBits: 128 };
      pkcs11.C_DecryptInit(session, { mechanism: pkcs11js.CKM_AES_GCM, parameter }, kek);
      assert.deepEqual(pkcs11.C_Decrypt(session, wrapped.subarray(17), Buffer.alloc(48)), dataKey);
    } finally {
      direct.close();
      await kms.close();
    }
  });

  it('a KEK is a sensitive, never-extractable AES-256 token key: reading CKA_VALUE, setting CKA_EXTRACTABLE and wrapping it out all fail', async () => {
    const kms = await openProvider();
    const direct = directSession();
    try {
      const name = newKeyName();
      await kms.createKey(name);
      const { pkcs11, session } = direct;
      const kek = findKek(pkcs11, session, `${name}#v1`);
      const attributes = pkcs11.C_GetAttributeValue(session, kek, [
        { type: pkcs11js.CKA_KEY_TYPE },
        { type: pkcs11js.CKA_VALUE_LEN },
        { type: pkcs11js.CKA_TOKEN },
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
        { type: pkcs11js.CKA_WRAP },
      ]);
      assert.deepEqual(
        attributes.map(({ value }) => (value.length === 8 ? Number(value.readBigUInt64LE()) : value.readUIntLE(0, value.length))),
        [pkcs11js.CKK_AES, 32, 1, 1, 1, 0, 1, 0],
        'AES, 32 bytes, token, sensitive, always sensitive, not extractable, never extractable, cannot wrap',
      );

      assert.throws(() => pkcs11.C_GetAttributeValue(session, kek, [{ type: pkcs11js.CKA_VALUE }]), /CKR_ATTRIBUTE_SENSITIVE/);
      assert.throws(() => pkcs11.C_SetAttributeValue(session, kek, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]));
      assert.throws(() => pkcs11.C_SetAttributeValue(session, kek, [{ type: pkcs11js.CKA_SENSITIVE, value: false }]));
      assert.throws(() => pkcs11.C_CopyObject(session, kek, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]));
      const [extractable] = pkcs11.C_GetAttributeValue(session, kek, [{ type: pkcs11js.CKA_EXTRACTABLE }]);
      assert.deepEqual(extractable?.value, Buffer.from([0]), 'still not extractable');

      const wrappingKey = pkcs11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_WRAP, value: true },
      ]);
      for (const mechanism of [pkcs11js.CKM_AES_KEY_WRAP_PAD, pkcs11js.CKM_AES_KEY_WRAP]) {
        assert.throws(() => pkcs11.C_WrapKey(session, { mechanism }, wrappingKey, kek, Buffer.alloc(256)), /CKR_KEY_UNEXTRACTABLE/);
      }
      pkcs11.C_DestroyObject(session, wrappingKey);
    } finally {
      direct.close();
      await kms.close();
    }
  });
});

describe('pkcs11 KMS: concurrency', () => {
  it('64 concurrent wrap and unwrap loops for 3 s, with rotations under way, all round-trip and nothing crashes', async (t: TestContext) => {
    const kms = await openProvider({ sessions: 8 });
    try {
      const name = newKeyName();
      await kms.createKey(name);
      const stopAt = Date.now() + 3000;
      let pairs = 0;
      let rotations = 0;
      // For 3 s and at least 3 rotations: a slow, busy machine takes longer instead of testing less.
      const running = () => Date.now() < stopAt || rotations < 3;
      const loops = Array.from({ length: 64 }, async (_, loop) => {
        while (running()) {
          const dataKey = randomBytes(32);
          const context = Buffer.from(`loop-${loop}|${pairs}`);
          const wrapped = await kms.wrapKey(name, dataKey, context);
          assert.deepEqual(await kms.unwrapKey(name, wrapped, context), dataKey);
          pairs += 1;
        }
      });
      const rotating = (async () => {
        while (running()) {
          await kms.rotateKey(name);
          rotations += 1;
          await sleep(250);
        }
      })();
      await Promise.all([...loops, rotating]);
      assert.ok(pairs >= 64, `${pairs} round trips`);
      assert.ok(rotations >= 3, `${rotations} rotations`);
      assert.equal((await kms.listKeyVersions(name)).length, rotations + 1);
      t.diagnostic(`${pairs} wrap+unwrap round trips in 3 s (${Math.round(pairs / 3)}/s) with ${rotations} rotations, 8 sessions`);
    } finally {
      await kms.close();
    }
  });
});

describe('pkcs11 KMS: several providers and processes on one token', () => {
  it('a rotation and a disable made by another process are seen by the next call', async () => {
    const kms = await openProvider();
    try {
      const name = newKeyName();
      await kms.createKey(name);
      const dataKey = randomBytes(32);
      const wrappedV1 = await kms.wrapKey(name, dataKey, aad);
      const child = `
        const { openPkcs11Kms } = await import(process.env.MODULE_URL);
        const kms = await openPkcs11Kms({ library: process.env.LIBRARY, tokenLabel: process.env.TOKEN_LABEL, pin: process.env.PIN });
        const version = await kms.rotateKey(process.env.KEY_NAME);
        await kms.disableKeyVersion(process.env.KEY_NAME, 1);
        await kms.close();
        process.stdout.write(String(version));`;
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', child], {
        env: {
          ...process.env,
          MODULE_URL: new URL('../../src/kms/pkcs11.js', import.meta.url).href,
          LIBRARY: token.library,
          TOKEN_LABEL: token.tokenLabel,
          PIN: token.pin,
          KEY_NAME: name,
        },
      });
      assert.equal(stdout, '2');
      assert.equal((await kms.wrapKey(name, dataKey, aad)).readUInt32BE(1), 2);
      await assert.rejects(kms.unwrapKey(name, wrappedV1, aad), PreconditionFailedError);
    } finally {
      await kms.close();
    }
  });

  it('concurrent rotations by two providers get distinct versions: the token-wide lock serializes them', async () => {
    const [one, two] = await Promise.all([openProvider(), openProvider()]);
    try {
      const name = newKeyName();
      await one.createKey(name);
      const versions = await Promise.all([one, two, one, two, one, two].map((kms) => kms.rotateKey(name)));
      assert.deepEqual([...versions].sort((a, b) => a - b), [2, 3, 4, 5, 6, 7]);
      const listed = await two.listKeyVersions(name);
      assert.deepEqual(listed.map((v) => v.version), [1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(listed.filter((v) => v.primary).map((v) => v.version), [7]);
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
  });

  it('two providers destroying due versions at the same time destroy each version once', async () => {
    const first = movableClock();
    const second = movableClock();
    const [one, two] = await Promise.all([openProvider({ clock: first.clock }), openProvider({ clock: second.clock })]);
    try {
      // Keys other tests scheduled fall due two days on: destroy them first, so that the count below is ours.
      for (const { advance } of [first, second]) advance(2 * 86_400_000);
      await one.destroyDueVersions();
      const name = newKeyName();
      await one.createKey(name);
      await one.rotateKey(name);
      await one.scheduleKeyDestruction(name);
      for (const { advance } of [first, second]) advance(86_400_000 + 60_000);
      const counts = await Promise.all([one.destroyDueVersions(), two.destroyDueVersions()]);
      assert.equal(counts[0] + counts[1], 2, `destroyed ${counts.join(' + ')}`);
      assert.deepEqual((await two.listKeyVersions(name)).map((v) => v.state), ['destroyed', 'destroyed']);
      const direct = directSession();
      try {
        for (const label of [`${name}#v1`, `${name}#v2`]) {
          direct.pkcs11.C_FindObjectsInit(direct.session, [{ type: pkcs11js.CKA_LABEL, value: label }]);
          assert.equal(direct.pkcs11.C_FindObjects(direct.session, 10).length, 0, `${label} is gone from the token`);
          direct.pkcs11.C_FindObjectsFinal(direct.session);
        }
      } finally {
        direct.close();
      }
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
  });
});

describe('pkcs11 KMS: token outage', () => {
  it('with the token gone every call is an UnavailableError naming it and health is not ok; once back, the same provider recovers', async () => {
    const kms = await openProvider();
    try {
      const name = newKeyName();
      await kms.createKey(name);
      const dataKey = randomBytes(32);
      const wrapped = await kms.wrapKey(name, dataKey, aad);

      await token.unplug();
      try {
        const unavailable = (error: unknown) =>
          error instanceof UnavailableError && error.message.includes(token.tokenLabel) && !error.message.includes(token.pin);
        await assert.rejects(kms.unwrapKey(name, wrapped, aad), unavailable);
        await assert.rejects(kms.wrapKey(name, dataKey, aad), unavailable);
        await assert.rejects(kms.listKeyVersions(name), unavailable);
        await assert.rejects(kms.createKey(newKeyName()), unavailable);
        const health = await kms.health();
        assert.equal(health.ok, false);
        assert.match(health.detail, new RegExp(token.tokenLabel));
      } finally {
        await token.plugIn();
      }

      // The provider finds the token again by itself (re-initializing the module at most once a second).
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          assert.deepEqual(await kms.unwrapKey(name, wrapped, aad), dataKey);
          break;
        } catch (error) {
          if (!(error instanceof UnavailableError) || Date.now() > deadline) throw error;
          await sleep(200);
        }
      }
      assert.equal((await kms.health()).ok, true);
      const fresh = randomBytes(32);
      assert.deepEqual(await kms.unwrapKey(name, await kms.wrapKey(name, fresh, aad), aad), fresh);
    } finally {
      await kms.close();
    }
  });
});

describe('pkcs11 KMS: configuration and the PIN', () => {
  it('opens from the configuration with the PIN from STRONGROOM_KMS__PKCS11__PIN, and config print masks the PIN', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'strongroom-p11-config-'));
    try {
      const config = loadConfig({
        env: {
          STRONGROOM_DATA_DIR: dataDir,
          STRONGROOM_KMS__PROVIDER: 'pkcs11',
          STRONGROOM_KMS__PKCS11__LIBRARY: token.library,
          STRONGROOM_KMS__PKCS11__TOKEN_LABEL: token.tokenLabel,
          STRONGROOM_KMS__PKCS11__PIN: token.pin,
          STRONGROOM_KMS__PKCS11__SESSIONS: '2',
        },
      });
      const kms = await openKms(config.kms);
      try {
        assert.equal(kms.provider, 'pkcs11');
        const health = await kms.health();
        assert.equal(health.ok, true, health.detail);
        assert.match(health.detail, /of 2 sessions/);
      } finally {
        await kms.close();
      }
      assert.equal(JSON.stringify(maskedConfig(config)).includes(token.pin), false);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('a token label no token has is an UnavailableError naming the label', async () => {
    await assert.rejects(
      openProvider({ tokenLabel: 'no-such-token' }),
      (error: unknown) => error instanceof UnavailableError && error.message.includes('"no-such-token"'),
    );
  });

  it('a wrong PIN is a ConfigError naming kms.pkcs11.pin; the right one still opens', async () => {
    await assert.rejects(
      openProvider({ pin: `${token.pin}-wrong` }),
      (error: unknown) => error instanceof ConfigError && error.key === 'kms.pkcs11.pin',
    );
    const kms = await openProvider();
    assert.equal((await kms.health()).ok, true);
    await kms.close();
  });

  it('a module that does not load is a ConfigError naming kms.pkcs11.library', async () => {
    await assert.rejects(
      openProvider({ library: join(token.folder, 'missing.so') }),
      (error: unknown) => error instanceof ConfigError && error.key === 'kms.pkcs11.library',
    );
  });

  it('the PIN is in no error (message, stack or inspection) and not in an inspection of the provider', async () => {
    const wrongPin = `${token.pin}-wrong`;
    const errors: unknown[] = [];
    const collect = (promise: Promise<unknown>) => promise.then(() => assert.fail('expected a failure'), (error: unknown) => errors.push(error));
    await collect(openProvider({ pin: wrongPin }));
    await collect(openProvider({ tokenLabel: 'no-such-token' }));
    await collect(openProvider({ library: join(token.folder, 'missing.so') }));

    const kms = await openProvider();
    const name = newKeyName();
    await kms.createKey(name);
    const wrapped = await kms.wrapKey(name, randomBytes(32), aad);
    await collect(kms.createKey(name));
    await collect(kms.unwrapKey(name, wrapped, Buffer.from('other')));
    await collect(kms.unwrapKey(newKeyName(), wrapped, aad));
    await collect(kms.disableKeyVersion(name, 1));
    assert.equal(inspect(kms, { showHidden: true, depth: Infinity }).includes(token.pin), false);
    assert.equal(JSON.stringify(kms).includes(token.pin), false);

    await token.unplug();
    try {
      await collect(kms.unwrapKey(name, wrapped, aad));
      await collect(kms.createKey(newKeyName()));
    } finally {
      await token.plugIn();
    }
    await kms.close();
    await collect(kms.wrapKey(name, randomBytes(32), aad));

    const kinds = [ConfigError, UnavailableError, ConflictError, IntegrityError, NotFoundError, PreconditionFailedError];
    for (const kind of kinds) {
      assert.ok(errors.some((error) => error instanceof kind), `a ${kind.name} was seen`);
    }
    for (const error of errors) {
      const text = `${String(error)}\n${(error as Error).stack ?? ''}\n${inspect(error, { showHidden: true, depth: Infinity })}`;
      assert.equal(text.includes(token.pin), false, `the PIN is not in: ${String(error)}`);
    }
  });
});
