import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { dataKeyStatus, reencryptAll, rotateDataKey, tenantsToReencrypt } from '../../src/core/data-key-rotation.js';
import { jobProgress } from '../../src/core/job-progress.js';
import type { Principal } from '../../src/core/context.js';
import { openCore } from '../../src/core/open-core.js';
import { createTenant } from '../../src/core/tenants.js';
import { prepareDataDir } from '../../src/cli/runtime.js';
import { recordKeyId } from '../../src/crypto/record-cipher.js';
import { CLI_MAIN, childEnv, runCli, tempDirs } from '../support/cli-process.js';
import { DRIVERS, startHarness, stopPostgres } from '../support/strongroom.js';

after(stopPostgres);
const tempDir = tempDirs('strongroom-data-key-');
const OPERATOR = { kind: 'system', name: 'test' } as const;
const OPTIONS = { batchRows: 7, pauseMs: 0 };

/** The data key id in the header of every sealed value of the tenant's mutable rows. */
async function sealedKeyIds(db: Awaited<ReturnType<typeof startHarness>>['core']['db'], tenantId: string): Promise<Set<number>> {
  const ids = new Set<number>();
  for (const r of await db.reader.selectFrom('records').select('body').where('tenant_id', '=', tenantId).execute()) ids.add(recordKeyId(r.body));
  for (const r of await db.reader.selectFrom('record_versions').select('body').where('tenant_id', '=', tenantId).execute()) ids.add(recordKeyId(r.body));
  for (const r of await db.reader.selectFrom('members').select('email_enc').where('tenant_id', '=', tenantId).execute()) if (r.email_enc) ids.add(recordKeyId(r.email_enc));
  return ids;
}

for (const driver of DRIVERS) {
  describe(`data-key rotation and re-encryption, on ${driver}`, () => {
    test('rotating under a write load: new writes use the new key, every row moves to it, every version still reads, the old key retires', async () => {
      let now = Date.parse('2026-11-01T00:00:00Z');
      const h = await startHarness(driver, { now: () => now });
      try {
        const t = await h.tenant('dk');
        const other = await h.tenant('dk-other');
        const notes = `/v1/tenants/${t.tenantId}/collections/notes`;
        assert.equal((await h.call('PUT', notes, { key: t.apiKey, body: { indexes: [{ field: 'n', expectedRows: 1000 }] } })).status, 201);
        assert.equal((await h.call('POST', `/v1/tenants/${t.tenantId}/members`, { key: t.apiKey, body: { email: 'eve@customer.example', role: 'viewer' } })).status, 201);
        const written = new Map<string, number[]>();
        const put = async (i: number, round: number) => {
          const res = await h.call('PUT', `${notes}/records/n${i}`, { key: t.apiKey, body: { n: i, round } });
          assert.equal(res.status, 201 - (round > 0 ? 1 : 0), res.text);
          written.set(`n${i}`, [...(written.get(`n${i}`) ?? []), round]);
        };
        for (let i = 0; i < 40; i += 1) await put(i, 0);
        const otherNotes = `/v1/tenants/${other.tenantId}/collections/notes`;
        assert.equal((await h.call('PUT', otherNotes, { key: other.apiKey, body: { indexes: [] } })).status, 201);
        assert.equal((await h.call('PUT', `${otherNotes}/records/x`, { key: other.apiKey, body: { x: 1 } })).status, 201);

        const rotated = rotateDataKey(h.core, t.tenantId, OPERATOR);
        const load = Promise.all(Array.from({ length: 20 }, (_, i) => put(i, 1)));
        assert.equal(await rotated, 3, 'ids 1 and 2 are the first data key and the index key');
        await load;
        assert.deepEqual(await tenantsToReencrypt(h.core), [t.tenantId], 'the other tenant has nothing to move');

        // Within the current-key cache's lifetime an instance may still seal under the old key: no retirement yet.
        // (The server's own re-encryption job may do part of this work at the same time: that is safe.)
        await reencryptAll(h.core, OPTIONS);
        assert.deepEqual([...(await sealedKeyIds(h.core.db, t.tenantId))], [3], 'no mutable row is sealed under the old key');
        assert.deepEqual(await dataKeyStatus(h.core).then((s) => s.find((x) => x.tenantId === t.tenantId)), { tenantId: t.tenantId, current: 3, pending: [1], retired: [] });

        now += 3600_000;
        assert.equal(await reencryptAll(h.core, OPTIONS), 0, 'a second pass finds nothing to move');
        assert.deepEqual(await dataKeyStatus(h.core).then((s) => s.find((x) => x.tenantId === t.tenantId)), { tenantId: t.tenantId, current: 3, pending: [], retired: [1] });
        assert.deepEqual(await tenantsToReencrypt(h.core), []);
        assert.deepEqual([...(await sealedKeyIds(h.core.db, other.tenantId))], [1], "another tenant's rows are untouched");
        const progress = await jobProgress(h.core, 'reencrypt');
        assert.ok(progress?.finishedAt);

        h.core.keyring.clear();
        for (const [id, rounds] of written) {
          const res = await h.call('GET', `${notes}/records/${id}/versions`, { key: t.apiKey });
          assert.equal(res.status, 200, res.text);
          assert.deepEqual((res.json.versions as { data: { round: number } }[]).map((v) => v.data.round).reverse(), rounds, `every version of ${id} reads`);
        }
        const found = await h.call('GET', `${notes}/records?where.n=7`, { key: t.apiKey });
        assert.deepEqual((found.json.records as { id: string }[]).map((r) => r.id), ['n7'], 'blind indexes are unchanged: the index key is not rotated');
        const members = await h.call('GET', `/v1/tenants/${t.tenantId}/members`, { key: t.apiKey });
        assert.ok((members.json.members as { email: string }[]).some((m) => m.email === 'eve@customer.example'));

        const audit = await h.call('GET', `/v1/tenants/${t.tenantId}/audit?limit=1000`, { key: t.apiKey });
        assert.equal(audit.status, 200, 'audit targets sealed under the retired key still read');
        const events = audit.json.events as { action: string; target: string; actor: string }[];
        assert.ok(events.some((e) => e.action === 'data-key.rotate' && e.target === 'data-key:3 purpose:data kek-version:1' && e.actor === 'system:test'));
        assert.ok(events.some((e) => e.action === 'data-key.reencrypt' && e.target.startsWith('records.body rows:')));
        assert.ok(events.some((e) => e.action === 'data-key.retire' && e.target === 'data-key:1 retired; current data-key:3'));
        assert.ok(events.some((e) => e.action === 'record.put' && e.target === 'record:notes/n39'), 'targets sealed before the rotation');
      } finally {
        await h.close();
      }
    });
  });
}

test('kill -9 in the middle of a re-encryption: keys reencrypt finishes it, and keys status says so', async () => {
  const dir = tempDir();
  const config = loadConfig({ env: {}, overrides: { dataDir: dir } });
  await prepareDataDir(config);
  const core = await openCore(config);
  const { putRecord } = await import('../../src/core/records.js');
  const { declareCollection } = await import('../../src/core/collections.js');
  const meta = { requestId: 't', sourceIp: 'l' };
  let tenantId: string;
  try {
    ({ tenantId } = await createTenant(core, OPERATOR, meta, 'big'));
    const owner: Principal = { kind: 'api_key', tenantId, keyId: 'k_test', scopes: ['admin', 'write', 'read'] };
    await declareCollection(core, owner, meta, tenantId, 'rows', []);
    await Promise.all(Array.from({ length: 1200 }, (_, i) => putRecord(core, owner, meta, { tenantId, collection: 'rows', id: `r${i}` }, { i })));
  } finally {
    await core.close();
  }
  const env = { ...childEnv(), STRONGROOM_KEYS__REENCRYPT_BATCH_ROWS: '40', STRONGROOM_KEYS__REENCRYPT_PAUSE_MS: '20' };
  const child = spawn(process.execPath, [CLI_MAIN, '--data-dir', dir, 'keys', 'rotate', '--data-key', '--tenant', tenantId], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await new Promise<void>((resolve) => {
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      const match = /re-encrypted (\d+)\/2400/.exec(chunk);
      if (match && Number(match[1]) >= 400) resolve();
    });
  });
  child.kill('SIGKILL');
  await exited;

  const midway = JSON.parse((await runCli(dir, ['keys', 'status', '--json'])).stdout);
  assert.equal(midway.reencrypt.finishedAt, null, 'the killed run never finished');
  assert.ok(midway.reencrypt.done >= 400 && midway.reencrypt.done < 2400, `${midway.reencrypt.done} rows scanned before the kill`);
  assert.deepEqual(midway.tenants[0].dataKey, { tenantId, current: 3, pending: [1], retired: [] });

  const resumed = await runCli(dir, ['keys', 'reencrypt'], { env: { STRONGROOM_KEYS__REENCRYPT_PAUSE_MS: '0' } });
  assert.equal(resumed.code, 0, resumed.stderr);
  const moved = Number(/(\d+) rows re-encrypted/.exec(resumed.stdout)?.[1]);
  assert.ok(moved > 0 && moved < 2400, `${moved} rows left to move after the kill`);
  const after = await openCore(config);
  try {
    assert.deepEqual([...(await sealedKeyIds(after.db, tenantId))], [3]);
  } finally {
    await after.close();
  }
  const verify = await runCli(dir, ['audit', 'verify', '--json']);
  assert.equal(JSON.parse(verify.stdout).ok, true, 'every chain is intact after the kill');
});
