// The contract of the Kms interface (src/kms/kms.ts), as tests every provider must pass:
//
//   describeKmsConformance('local', async () => ({ kms: await openLocalKms(…), advanceClock, close }));
//
// Nothing here knows a provider: no wrapped-key format, no storage. `open` may return providers over
// one backing store (a token, a key ring) each time, so every test uses key names of its own and
// counts only what it made. Tests that need the waiting period to pass are skipped without
// `advanceClock`, which moves the provider's clock forward.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { ConflictError, IntegrityError, NotFoundError, PreconditionFailedError, UnavailableError } from '../../src/errors.js';
import { wrappedKeyVersion, type KeyVersionInfo, type Kms } from '../../src/kms/kms.js';

export interface KmsUnderTest {
  kms: Kms;
  advanceClock?(ms: number): void;
  close(): Promise<void>;
}

const aad = Buffer.from('tenant-a|data-key|1');
const MINUTE = 60_000;

const newKeyName = () => `tenant.conformance-${randomBytes(6).toString('hex')}`;

const states = (versions: KeyVersionInfo[]) => versions.map(({ version, state, primary }) => ({ version, state, primary }));

export function describeKmsConformance(label: string, open: () => Promise<KmsUnderTest>): void {
  /** Runs `body` with a freshly opened provider and closes it, whatever happens. */
  const withKms = async (body: (subject: KmsUnderTest) => Promise<void>) => {
    const subject = await open();
    try {
      await body(subject);
    } finally {
      await subject.close();
    }
  };

  describe(`KMS conformance: ${label}`, () => {
    describe('creating and listing', () => {
      it('a new key has one enabled primary version 1, and creating the name again is a ConflictError', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          await kms.createKey(name);
          const versions = await kms.listKeyVersions(name);
          assert.deepEqual(states(versions), [{ version: 1, state: 'enabled', primary: true }]);
          const [first] = versions;
          assert.ok(first !== undefined && Math.abs(first.createdAt.getTime() - Date.now()) < 10 * MINUTE);
          await assert.rejects(kms.createKey(name), ConflictError);
        }));

      it('no answer carries key material: a version is its number, state, primary flag and creation time', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          await kms.createKey(name);
          await kms.rotateKey(name);
          for (const version of await kms.listKeyVersions(name)) {
            assert.deepEqual(Object.keys(version).sort(), ['createdAt', 'primary', 'state', 'version']);
          }
        }));

      it('every operation on an unknown key is a NotFoundError', () =>
        withKms(async ({ kms }) => {
          const known = newKeyName();
          await kms.createKey(known);
          const wrapped = await kms.wrapKey(known, randomBytes(32), aad);
          const unknown = newKeyName();
          await assert.rejects(kms.wrapKey(unknown, randomBytes(32), aad), NotFoundError);
          await assert.rejects(kms.unwrapKey(unknown, wrapped, aad), NotFoundError);
          await assert.rejects(kms.rotateKey(unknown), NotFoundError);
          await assert.rejects(kms.listKeyVersions(unknown), NotFoundError);
          await assert.rejects(kms.disableKeyVersion(unknown, 1), NotFoundError);
          await assert.rejects(kms.enableKeyVersion(unknown, 1), NotFoundError);
          await assert.rejects(kms.scheduleKeyDestruction(unknown), NotFoundError);
          await assert.rejects(kms.cancelKeyDestruction(unknown), NotFoundError);
        }));

      it('disabling or enabling a version the key does not have is a NotFoundError', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          await kms.createKey(name);
          await assert.rejects(kms.disableKeyVersion(name, 9), NotFoundError);
          await assert.rejects(kms.enableKeyVersion(name, 9), NotFoundError);
        }));
    });

    describe('wrapping', () => {
      it('unwraps what it wrapped, for data keys of 16, 32 and 64 bytes, with and without associated data', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          await kms.createKey(name);
          for (const length of [16, 32, 64]) {
            for (const context of [aad, Buffer.alloc(0)]) {
              const dataKey = randomBytes(length);
              const wrapped = await kms.wrapKey(name, dataKey, context);
              assert.equal(wrapped.includes(dataKey), false, 'the wrapped key does not hold the data key in clear');
              assert.deepEqual(await kms.unwrapKey(name, wrapped, context), dataKey);
            }
          }
        }));

      it('wraps the same data key differently each time', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          await kms.createKey(name);
          const dataKey = randomBytes(32);
          const first = await kms.wrapKey(name, dataKey, aad);
          const second = await kms.wrapKey(name, dataKey, aad);
          assert.notDeepEqual(first, second);
        }));

      it('a wrong AAD, a flipped last byte, a truncated input or another key\'s name is an IntegrityError', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          const other = newKeyName();
          await kms.createKey(name);
          await kms.createKey(other);
          const wrapped = await kms.wrapKey(name, randomBytes(32), aad);
          await assert.rejects(kms.unwrapKey(name, wrapped, Buffer.from('tenant-b|data-key|1')), IntegrityError);
          await assert.rejects(kms.unwrapKey(name, wrapped, Buffer.alloc(0)), IntegrityError);
          const flipped = Buffer.from(wrapped);
          flipped[flipped.length - 1] = (flipped[flipped.length - 1] as number) ^ 0x01;
          await assert.rejects(kms.unwrapKey(name, flipped, aad), IntegrityError);
          await assert.rejects(kms.unwrapKey(name, wrapped.subarray(0, wrapped.length - 1), aad), IntegrityError);
          await assert.rejects(kms.unwrapKey(name, wrapped.subarray(0, 8), aad), IntegrityError);
          await assert.rejects(kms.unwrapKey(other, wrapped, aad), IntegrityError);
        }));

      it('serves 32 concurrent wraps and unwraps, each with its own data key', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          await kms.createKey(name);
          await Promise.all(
            Array.from({ length: 32 }, async (_, i) => {
              const dataKey = randomBytes(32);
              const context = Buffer.from(`record-${i}`);
              assert.deepEqual(await kms.unwrapKey(name, await kms.wrapKey(name, dataKey, context), context), dataKey);
            }),
          );
        }));
    });

    describe('rotation', () => {
      it('makes a new primary each time; older versions still unwrap, and new wraps use the new version', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          await kms.createKey(name);
          const keys = [randomBytes(32), randomBytes(32), randomBytes(32)];
          const wrapped = [await kms.wrapKey(name, keys[0] as Buffer, aad)];
          assert.equal(await kms.rotateKey(name), 2);
          wrapped.push(await kms.wrapKey(name, keys[1] as Buffer, aad));
          assert.equal(await kms.rotateKey(name), 3);
          wrapped.push(await kms.wrapKey(name, keys[2] as Buffer, aad));
          assert.deepEqual(states(await kms.listKeyVersions(name)), [
            { version: 1, state: 'enabled', primary: false },
            { version: 2, state: 'enabled', primary: false },
            { version: 3, state: 'enabled', primary: true },
          ]);
          for (const [i, key] of keys.entries()) {
            assert.deepEqual(await kms.unwrapKey(name, wrapped[i] as Buffer, aad), key);
            assert.equal(wrappedKeyVersion(wrapped[i] as Buffer), i + 1, 'the wrapped key names its version where re-wrapping reads it');
          }
          // With versions 1 and 2 disabled only version 3 works: the last wrap used it, the others did not.
          await kms.disableKeyVersion(name, 1);
          await kms.disableKeyVersion(name, 2);
          assert.deepEqual(await kms.unwrapKey(name, wrapped[2] as Buffer, aad), keys[2]);
          await assert.rejects(kms.unwrapKey(name, wrapped[0] as Buffer, aad), PreconditionFailedError);
          await assert.rejects(kms.unwrapKey(name, wrapped[1] as Buffer, aad), PreconditionFailedError);
          const fresh = randomBytes(32);
          assert.deepEqual(await kms.unwrapKey(name, await kms.wrapKey(name, fresh, aad), aad), fresh);
        }));
    });

    describe('disabling and enabling versions', () => {
      it('a disabled version does not unwrap until enabled again; both are idempotent', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          await kms.createKey(name);
          const dataKey = randomBytes(32);
          const wrapped = await kms.wrapKey(name, dataKey, aad);
          await kms.rotateKey(name);
          await kms.disableKeyVersion(name, 1);
          await kms.disableKeyVersion(name, 1);
          assert.deepEqual(states(await kms.listKeyVersions(name)), [
            { version: 1, state: 'disabled', primary: false },
            { version: 2, state: 'enabled', primary: true },
          ]);
          await assert.rejects(kms.unwrapKey(name, wrapped, aad), PreconditionFailedError);
          await kms.enableKeyVersion(name, 1);
          await kms.enableKeyVersion(name, 1);
          assert.equal((await kms.listKeyVersions(name))[0]?.state, 'enabled');
          assert.deepEqual(await kms.unwrapKey(name, wrapped, aad), dataKey);
        }));

      it('the primary version cannot be disabled (PreconditionFailedError)', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          await kms.createKey(name);
          await assert.rejects(kms.disableKeyVersion(name, 1), PreconditionFailedError);
          await kms.rotateKey(name);
          await assert.rejects(kms.disableKeyVersion(name, 2), PreconditionFailedError);
          assert.deepEqual((await kms.listKeyVersions(name)).map((v) => v.state), ['enabled', 'enabled']);
        }));
    });

    describe('scheduled destruction', () => {
      it('scheduling stops every version from wrapping and unwrapping and returns a time in the future; scheduling again returns the same time', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          await kms.createKey(name);
          const wrapped = await kms.wrapKey(name, randomBytes(32), aad);
          await kms.rotateKey(name);
          const at = await kms.scheduleKeyDestruction(name);
          assert.ok(at instanceof Date && at.getTime() > Date.now(), `${at.toISOString()} is in the future`);
          assert.deepEqual(
            (await kms.listKeyVersions(name)).map((v) => v.state),
            ['destroy_scheduled', 'destroy_scheduled'],
          );
          await assert.rejects(kms.wrapKey(name, randomBytes(32), aad), PreconditionFailedError);
          await assert.rejects(kms.unwrapKey(name, wrapped, aad), PreconditionFailedError);
          await assert.rejects(kms.rotateKey(name), PreconditionFailedError);
          await assert.rejects(kms.enableKeyVersion(name, 1), PreconditionFailedError);
          await assert.rejects(kms.disableKeyVersion(name, 1), PreconditionFailedError);
          assert.equal((await kms.scheduleKeyDestruction(name)).getTime(), at.getTime());
        }));

      it('cancelling restores each version to the state it had; cancelling what is not scheduled is a PreconditionFailedError', () =>
        withKms(async ({ kms }) => {
          const name = newKeyName();
          await kms.createKey(name);
          const first = randomBytes(32);
          const wrappedFirst = await kms.wrapKey(name, first, aad);
          await kms.rotateKey(name);
          const second = randomBytes(32);
          const wrappedSecond = await kms.wrapKey(name, second, aad);
          await kms.disableKeyVersion(name, 1);
          await assert.rejects(kms.cancelKeyDestruction(name), PreconditionFailedError);
          await kms.scheduleKeyDestruction(name);
          await kms.cancelKeyDestruction(name);
          assert.deepEqual(states(await kms.listKeyVersions(name)), [
            { version: 1, state: 'disabled', primary: false },
            { version: 2, state: 'enabled', primary: true },
          ]);
          assert.deepEqual(await kms.unwrapKey(name, wrappedSecond, aad), second);
          await assert.rejects(kms.unwrapKey(name, wrappedFirst, aad), PreconditionFailedError);
          await kms.enableKeyVersion(name, 1);
          assert.deepEqual(await kms.unwrapKey(name, wrappedFirst, aad), first);
          await assert.rejects(kms.cancelKeyDestruction(name), PreconditionFailedError);
        }));

      it('destroys the versions once the waiting period has passed, and nothing unwraps or restores them ever again', (t: TestContext) =>
        withKms(async ({ kms, advanceClock }) => {
          if (advanceClock === undefined) {
            t.skip('the provider under test has no controllable clock');
            return;
          }
          const name = newKeyName();
          await kms.createKey(name);
          const wrappedFirst = await kms.wrapKey(name, randomBytes(32), aad);
          await kms.rotateKey(name);
          const wrappedSecond = await kms.wrapKey(name, randomBytes(32), aad);
          const at = await kms.scheduleKeyDestruction(name);

          // Not due yet: nothing of this key is destroyed.
          await kms.destroyDueVersions();
          assert.deepEqual((await kms.listKeyVersions(name)).map((v) => v.state), ['destroy_scheduled', 'destroy_scheduled']);

          advanceClock(at.getTime() - Date.now() + MINUTE);
          await assert.rejects(kms.cancelKeyDestruction(name), PreconditionFailedError, 'the waiting period is over');
          assert.ok((await kms.destroyDueVersions()) >= 2);
          assert.deepEqual((await kms.listKeyVersions(name)).map((v) => v.state), ['destroyed', 'destroyed']);
          assert.equal(await kms.destroyDueVersions(), 0, 'nothing is destroyed twice');

          for (const wrapped of [wrappedFirst, wrappedSecond]) {
            await assert.rejects(kms.unwrapKey(name, wrapped, aad), PreconditionFailedError);
          }
          await assert.rejects(kms.wrapKey(name, randomBytes(32), aad), PreconditionFailedError);
          await assert.rejects(kms.cancelKeyDestruction(name), PreconditionFailedError);
          await assert.rejects(kms.enableKeyVersion(name, 1), PreconditionFailedError);
          await assert.rejects(kms.rotateKey(name), PreconditionFailedError);
          await assert.rejects(kms.scheduleKeyDestruction(name), PreconditionFailedError);

          // Another provider on the same backend agrees, and the name is never reused.
          await withKms(async ({ kms: later }) => {
            await assert.rejects(later.unwrapKey(name, wrappedSecond, aad), PreconditionFailedError);
            await assert.rejects(later.createKey(name), ConflictError);
          });
        }));

      it('a waiting period that has passed cannot be cancelled, whether or not the versions are destroyed yet', (t: TestContext) =>
        withKms(async ({ kms, advanceClock }) => {
          if (advanceClock === undefined) {
            t.skip('the provider under test has no controllable clock');
            return;
          }
          const name = newKeyName();
          await kms.createKey(name);
          const at = await kms.scheduleKeyDestruction(name);
          advanceClock(at.getTime() - Date.now() + MINUTE);
          await assert.rejects(kms.cancelKeyDestruction(name), PreconditionFailedError);
          // Local providers destroy when destroyDueVersions runs; a cloud KMS destroys on its own.
          assert.ok(['destroy_scheduled', 'destroyed'].includes((await kms.listKeyVersions(name))[0]!.state));
        }));
    });

    describe('several providers on one backend', () => {
      it('a second provider sees the keys, versions and states the first made, and the first sees its rotation', () =>
        withKms(async ({ kms: first }) => {
          await withKms(async ({ kms: second }) => {
            const name = newKeyName();
            await first.createKey(name);
            await first.rotateKey(name);
            await first.disableKeyVersion(name, 1);
            assert.deepEqual(states(await second.listKeyVersions(name)), states(await first.listKeyVersions(name)));
            const dataKey = randomBytes(32);
            assert.deepEqual(await second.unwrapKey(name, await first.wrapKey(name, dataKey, aad), aad), dataKey);
            assert.equal(await second.rotateKey(name), 3);
            assert.equal((await first.listKeyVersions(name)).find((v) => v.primary)?.version, 3);
            // first's next wrap uses version 3: it still unwraps with version 2 disabled.
            const wrapped = await first.wrapKey(name, dataKey, aad);
            await second.disableKeyVersion(name, 2);
            assert.deepEqual(await first.unwrapKey(name, wrapped, aad), dataKey);
          });
        }));
    });

    describe('health and closing', () => {
      it('health is ok while open and names the provider', () =>
        withKms(async ({ kms }) => {
          const health = await kms.health();
          assert.equal(health.ok, true, health.detail);
          assert.equal(health.provider, kms.provider);
          assert.ok(health.detail.length > 0);
        }));

      it('after close every call is an UnavailableError and health is not ok; closing twice is harmless', async () => {
        const subject = await open();
        const { kms } = subject;
        const name = newKeyName();
        await kms.createKey(name);
        const wrapped = await kms.wrapKey(name, randomBytes(32), aad);
        await subject.close();
        await assert.rejects(kms.wrapKey(name, randomBytes(32), aad), UnavailableError);
        await assert.rejects(kms.unwrapKey(name, wrapped, aad), UnavailableError);
        await assert.rejects(kms.createKey(newKeyName()), UnavailableError);
        await assert.rejects(kms.rotateKey(name), UnavailableError);
        await assert.rejects(kms.listKeyVersions(name), UnavailableError);
        await assert.rejects(kms.scheduleKeyDestruction(name), UnavailableError);
        await assert.rejects(kms.destroyDueVersions(), UnavailableError);
        assert.equal((await kms.health()).ok, false);
        await subject.close();
      });
    });
  });
}
