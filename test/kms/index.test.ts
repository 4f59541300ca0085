import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../../src/errors.js';
import { openKms } from '../../src/kms/index.js';
import { createMasterKeyFile } from '../../src/kms/local.js';

const folder = mkdtempSync(join(tmpdir(), 'strongroom-openkms-'));
after(() => rmSync(folder, { recursive: true, force: true }));

const ENV_NAME = 'STRONGROOM_TEST_KMS_MASTER_KEY';

describe('openKms', () => {
  it('opens the local provider with the master key file when the variable is unset', async () => {
    const masterKeyFile = join(folder, 'file-master.key');
    await createMasterKeyFile(masterKeyFile);
    delete process.env[ENV_NAME];
    const config = { provider: 'local' as const, local: { keyStoreFile: join(folder, 'a.json'), masterKeyFile, masterKeyEnv: ENV_NAME } };
    const kms = await openKms(config);
    assert.equal(kms.provider, 'local');
    await kms.createKey('tenant.a');
    const wrapped = await kms.wrapKey('tenant.a', randomBytes(32), Buffer.alloc(0));
    await kms.close();
    // Reopened with the same file, the key still unwraps: the file really was the master key.
    const again = await openKms(config);
    assert.equal((await again.unwrapKey('tenant.a', wrapped, Buffer.alloc(0))).length, 32);
    await again.close();
  });

  it('takes the master key from the named environment variable when it is set, over the file', async () => {
    const masterKeyFile = join(folder, 'unused-master.key');
    writeFileSync(masterKeyFile, 'not a key', { mode: 0o644 });
    process.env[ENV_NAME] = randomBytes(32).toString('base64');
    try {
      const kms = await openKms({
        provider: 'local',
        local: { keyStoreFile: join(folder, 'b.json'), masterKeyFile, masterKeyEnv: ENV_NAME },
      });
      assert.equal((await kms.health()).ok, true);
      await kms.close();
    } finally {
      delete process.env[ENV_NAME];
    }
  });

  it('refuses a configuration with no master key source or no key store file', async () => {
    delete process.env[ENV_NAME];
    await assert.rejects(
      openKms({ provider: 'local', local: { keyStoreFile: join(folder, 'c.json'), masterKeyEnv: ENV_NAME } }),
      (error: unknown) => error instanceof ConfigError && error.message.includes(ENV_NAME),
    );
    await assert.rejects(
      openKms({ provider: 'local', local: { keyStoreFile: null, masterKeyFile: join(folder, 'file-master.key') } }),
      ConfigError,
    );
  });

  it('gives the local provider the configured waiting period before destruction', async () => {
    const masterKeyFile = join(folder, 'wait-master.key');
    await createMasterKeyFile(masterKeyFile);
    const kms = await openKms({ provider: 'local', destroyWaitSeconds: 60, local: { keyStoreFile: join(folder, 'd.json'), masterKeyFile } });
    await kms.createKey('tenant.a');
    const before = Date.now();
    const at = await kms.scheduleKeyDestruction('tenant.a');
    assert.ok(at.getTime() >= before + 60_000 && at.getTime() <= Date.now() + 60_000);
    await kms.close();
  });

  it('refuses a pkcs11 configuration without a library, token label or PIN, naming the missing key', async () => {
    const complete = { library: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'strongroom', pin: 'not-a-real-pin', sessions: 2 };
    for (const key of ['library', 'tokenLabel', 'pin'] as const) {
      await assert.rejects(
        openKms({ provider: 'pkcs11', pkcs11: { ...complete, [key]: null } }),
        (error: unknown) => error instanceof ConfigError && error.key === `kms.pkcs11.${key}` && !error.message.includes(complete.pin),
      );
    }
  });

  it('refuses an unknown provider', async () => {
    await assert.rejects(openKms({ provider: 'vault' } as unknown as Parameters<typeof openKms>[0]), ConfigError);
  });
});
