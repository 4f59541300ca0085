import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { jobProgress } from '../../src/core/job-progress.js';
import { dataKeyVersions, REWRAP_JOB, rewrapAll, staleDataKeys } from '../../src/core/key-rotation.js';
import { openConfiguredKms, openCore } from '../../src/core/open-core.js';
import { openSecretStore } from '../../src/secrets/store.js';
import { kekName } from '../../src/core/tenant-keys.js';
import { createTenant } from '../../src/core/tenants.js';
import { prepareDataDir } from '../../src/cli/runtime.js';
import { CLI_MAIN, childEnv, runCli, tempDirs } from '../support/cli-process.js';
import { DRIVERS, startHarness, stopPostgres } from '../support/strongroom.js';

after(stopPostgres);
const tempDir = tempDirs('strongroom-rotation-');

const stale = (counts: Awaited<ReturnType<typeof dataKeyVersions>>) => counts.reduce((n, t) => n + staleDataKeys(t), 0);

for (const driver of DRIVERS) {
  describe(`KEK rotation and re-wrapping, on ${driver}`, () => {
    test('rotating under a write load: every record still reads, no data key stays on the old version, each re-wrap is audited', async () => {
      const h = await startHarness(driver);
      try {
        const tenants = await Promise.all(['r1', 'r2', 'r3'].map((name) => h.tenant(name)));
        for (const t of tenants) assert.equal((await h.call('PUT', `/v1/tenants/${t.tenantId}/collections/notes`, { key: t.apiKey, body: { indexes: [] } })).status, 201);
        const written = new Map<string, unknown>();
        let writing = true;
        const load = (async () => {
          for (let i = 0; writing; i += 1) {
            const t = tenants[i % tenants.length]!;
            const body = { n: i };
            const res = await h.call('PUT', `/v1/tenants/${t.tenantId}/collections/notes/records/n${i}`, { key: t.apiKey, body });
            assert.equal(res.status, 201, res.text);
            written.set(`${t.tenantId}/n${i}`, body);
          }
        })();
        await new Promise((resolve) => setTimeout(resolve, 200));
        for (const t of tenants) assert.equal(await h.core.kms.rotateKey(kekName(t.tenantId)), 2);
        const rewrapped = await rewrapAll(h.core);
        await new Promise((resolve) => setTimeout(resolve, 200));
        writing = false;
        await load;
        assert.equal(rewrapped, 2 * tenants.length, 'a data key and an index key per tenant');
        assert.equal(stale(await dataKeyVersions(h.core)), 0);
        const progress = await jobProgress(h.core, REWRAP_JOB);
        assert.equal(progress?.done, rewrapped);
        assert.ok(progress?.finishedAt);

        // From now on every data key comes through the new wrapping.
        h.core.keyring.clear();
        assert.ok(written.size > 10, `${written.size} records written during the rotation`);
        for (const [path, body] of written) {
          const [tenantId, id] = path.split('/');
          const t = tenants.find((x) => x.tenantId === tenantId)!;
          const res = await h.call('GET', `/v1/tenants/${tenantId}/collections/notes/records/${id}`, { key: t.apiKey });
          assert.equal(res.status, 200, res.text);
          assert.deepEqual(res.json.data, body);
        }
        const audit = await h.call('GET', `/v1/tenants/${tenants[0]!.tenantId}/audit?limit=1000`, { key: tenants[0]!.apiKey });
        const rewraps = (audit.json.events as { action: string; target: string }[]).filter((e) => e.action === 'kms.rewrap').map((e) => e.target);
        assert.deepEqual(rewraps.sort(), ['data-key:1 kek-version:1->2', 'data-key:2 kek-version:1->2']);
        assert.equal(await rewrapAll(h.core), 0, 'a second run has nothing to do');
      } finally {
        await h.close();
      }
    });
  });
}

test('kill -9 in the middle of a re-wrap: the next run finishes it, and keys status says so', async () => {
  const dir = tempDir();
  const config = loadConfig({ env: {}, overrides: { dataDir: dir } });
  await prepareDataDir(config);
  const core = await openCore(config);
  const ids: string[] = [];
  try {
    for (let i = 0; i < 150; i += 1) ids.push((await createTenant(core, { kind: 'system', name: 'test' }, { requestId: 't', sourceIp: 'l' }, `k${i}`)).tenantId);
    for (const id of ids) await core.kms.rotateKey(kekName(id));
  } finally {
    await core.close();
  }

  const child = spawn(process.execPath, [CLI_MAIN, '--data-dir', dir, 'keys', 'rewrap'], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await new Promise<void>((resolve) => {
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      const match = /re-wrapped (\d+)\/300/.exec(chunk);
      if (match && Number(match[1]) >= 20) resolve();
    });
  });
  child.kill('SIGKILL');
  await exited;

  const midway = await runCli(dir, ['keys', 'status', '--json']);
  assert.equal(midway.code, 0, midway.stderr);
  const before = JSON.parse(midway.stdout);
  assert.ok(before.dataKeysOnOlderVersions > 0 && before.dataKeysOnOlderVersions < 300, `${before.dataKeysOnOlderVersions} left after the kill`);
  assert.equal(before.rewrap.finishedAt, null, 'the killed run never finished');

  const resumed = await runCli(dir, ['keys', 'rewrap']);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, new RegExp(`${before.dataKeysOnOlderVersions} data keys re-wrapped`));
  const status = JSON.parse((await runCli(dir, ['keys', 'status', '--json'])).stdout);
  assert.equal(status.dataKeysOnOlderVersions, 0);
  assert.ok(status.tenants.every((t: { primary: number; dataKeys: Record<string, number> }) => t.primary === 2 && t.dataKeys['2'] === 2));
  const verify = await runCli(dir, ['audit', 'verify', '--json']);
  assert.equal(JSON.parse(verify.stdout).ok, true, 'every chain is intact after the kill');
});

test('keys rotate --system re-wraps the secrets; the secrets still read back', async () => {
  const dir = tempDir();
  assert.equal((await runCli(dir, ['secrets', 'set', 'smtp-password'], { input: 'p4ssw0rd-system' })).code, 0);
  const rotated = await runCli(dir, ['keys', 'rotate', '--system']);
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.match(rotated.stdout, /system\.secrets: version 2 is primary; 1 secrets re-wrapped/);
  const config = loadConfig({ env: {}, overrides: { dataDir: dir } });
  const kms = await openConfiguredKms(config);
  try {
    const store = openSecretStore({ file: config.secrets.file!, kms });
    assert.equal((await store.get('smtp-password')).toString(), 'p4ssw0rd-system');
    assert.equal(await store.rewrap(), 0, 'already on the primary version');
  } finally {
    await kms.close();
  }
  assert.equal((await runCli(dir, ['keys', 'rotate'])).code, 2, 'which key must be said');
});
