import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { repairBacklog, runRepairs, scrubAll, storageStatus } from '../../src/core/files/blob-repairs.js';
import { applyRetention } from '../../src/core/files/retention.js';
import { fileBlobsUnder } from '../support/disk-scan.js';
import { takeDown } from '../support/blob-fixtures.js';
import { startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

after(stopPostgres);

const DAY = 86_400_000;

async function withFiles(env: Record<string, string>, run: (h: Harness, t: { tenantId: string; apiKey: string }, clock: { now: number }) => Promise<void>) {
  const clock = { now: Date.parse('2026-11-29T12:00:00Z') };
  const h = await startHarness('sqlite', { now: () => clock.now, env: { STRONGROOM_BLOBS__SCRUB_INTERVAL_HOURS: '0', ...env } });
  try {
    await run(h, await h.tenant('replication'), clock);
  } finally {
    await h.close();
  }
}

const upload = (h: Harness, t: { tenantId: string; apiKey: string }, path: string, body: string) =>
  h.call('PUT', `/v1/tenants/${t.tenantId}/files/${path}`, { key: t.apiKey, rawBody: body, headers: { 'content-type': 'text/plain' } });
const download = (h: Harness, t: { tenantId: string; apiKey: string }, path: string, query = '') => h.call('GET', `/v1/tenants/${t.tenantId}/files/${path}${query}`, { key: t.apiKey });
const copies = (h: Harness) => ({ primary: fileBlobsUnder(h.config.blobs.primary.path!), replica: fileBlobsUnder(h.config.blobs.replica.path!) });

describe('replicated file storage', () => {
  test('policy all: with the replica down an upload fails with 503 and leaves nothing; once it is back uploads work again', async () => {
    await withFiles({ STRONGROOM_BLOBS__WRITE_POLICY: 'all' }, async (h, t) => {
      assert.equal((await upload(h, t, 'first.txt', 'first')).status, 201);
      const bringBack = takeDown(h.config.blobs.replica.path!);
      const refused = await upload(h, t, 'during.txt', 'during the outage');
      assert.equal(refused.status, 503, refused.text);
      assert.equal(refused.json.error.code, 'unavailable');
      assert.equal((await download(h, t, 'during.txt')).status, 404);
      assert.equal(copies(h).primary.length, 1, 'no copy of the refused upload on the primary');
      bringBack();
      assert.equal((await upload(h, t, 'during.txt', 'after the outage')).status, 201);
      assert.deepEqual(copies(h).replica.map((f) => readFileSync(f)), copies(h).primary.map((f) => readFileSync(f)));
    });
  });

  test('policy primary: with the replica down uploads are acknowledged and queued (backlog and lag are reported); the repair job copies them once it is back', async () => {
    await withFiles({ STRONGROOM_BLOBS__WRITE_POLICY: 'primary' }, async (h, t, clock) => {
      assert.equal((await upload(h, t, 'first.txt', 'first')).status, 201);
      const bringBack = takeDown(h.config.blobs.replica.path!);
      for (const name of ['a', 'b', 'c']) assert.equal((await upload(h, t, `${name}.txt`, `degraded ${name}`)).status, 201);
      assert.equal(await repairBacklog(h.core), 3);
      clock.now += 90_000;
      const operator = { kind: 'operator', operatorId: 'op_test', roles: ['sre'], grant: null } as const;
      const status = await storageStatus(h.core, { ...operator, roles: [...operator.roles] });
      assert.deepEqual(status, {
        backends: ['primary', 'replica'],
        writePolicy: 'primary',
        repairBacklog: 3,
        replicationLagSeconds: 90,
        degradedWrites: 3,
        degradedDeletes: 0,
        fallbackReads: 0,
      });
      assert.equal((await download(h, t, 'b.txt')).text, 'degraded b');
      assert.deepEqual(await runRepairs(h.core), { repaired: 0, pending: 3 }, 'nothing to repair while the replica is down');
      bringBack();
      assert.deepEqual(await runRepairs(h.core), { repaired: 3, pending: 0 });
      const { primary, replica } = copies(h);
      assert.equal(replica.length, 4);
      assert.deepEqual(replica.map((f) => readFileSync(f)).sort(Buffer.compare), primary.map((f) => readFileSync(f)).sort(Buffer.compare));
    });
  });

  test('scrub finds a corrupt or missing copy on either side and repairs it from the healthy one', async () => {
    await withFiles({}, async (h, t) => {
      for (const name of ['x', 'y', 'z']) assert.equal((await upload(h, t, `${name}.txt`, `scrub ${name}`.repeat(100))).status, 201);
      assert.deepEqual(await scrubAll(h.core), { objects: 3, repaired: 0, unavailable: 0, unrecoverable: 0 });
      const { primary, replica } = copies(h);
      const original = readFileSync(primary[0]!);
      const flipped = Buffer.from(original);
      flipped[100]! ^= 0x40;
      writeFileSync(primary[0]!, flipped);
      writeFileSync(replica[1]!, readFileSync(replica[1]!).subarray(0, 10));
      assert.deepEqual(await scrubAll(h.core), { objects: 3, repaired: 2, unavailable: 0, unrecoverable: 0 });
      assert.deepEqual(readFileSync(primary[0]!), original, 'the primary copy is whole again');
      for (const name of ['x', 'y', 'z']) assert.equal((await download(h, t, `${name}.txt`)).text, `scrub ${name}`.repeat(100));
    });
  });
});

describe('retention', () => {
  test('non-current versions and deleted files outlive the window, not longer; their blobs go from both backends', async () => {
    await withFiles({ STRONGROOM_FILES__RETENTION_DAYS: '30' }, async (h, t, clock) => {
      assert.equal((await upload(h, t, 'kept.txt', 'v1')).status, 201);
      assert.equal((await upload(h, t, 'kept.txt', 'v2')).status, 201);
      assert.equal((await upload(h, t, 'gone.txt', 'soon deleted')).status, 201);
      assert.equal((await h.call('DELETE', `/v1/tenants/${t.tenantId}/files/gone.txt`, { key: t.apiKey })).status, 204);
      const records = `/v1/tenants/${t.tenantId}/collections/notes`;
      assert.equal((await h.call('PUT', records, { key: t.apiKey, body: { indexes: [] } })).status, 201);
      for (const n of [1, 2]) assert.equal((await h.call('PUT', `${records}/records/r`, { key: t.apiKey, body: { n } })).status, 201 - (n - 1));
      assert.equal(copies(h).primary.length, 3);

      clock.now += 29 * DAY;
      assert.deepEqual(await applyRetention(h.core), { fileVersions: 0, files: 0, recordVersions: 0, records: 0, blobs: 0 }, 'day 29: nothing goes');
      assert.equal((await download(h, t, 'kept.txt', '?version=1')).text, 'v1');

      clock.now += 2 * DAY;
      assert.deepEqual(await applyRetention(h.core), { fileVersions: 2, files: 1, recordVersions: 1, records: 0, blobs: 2 }, 'v1 of each file, the deleted file itself');
      assert.equal((await download(h, t, 'kept.txt')).text, 'v2', 'the current version stays');
      assert.equal((await download(h, t, 'kept.txt', '?version=1')).status, 404);
      assert.equal((await h.call('GET', `/v1/tenants/${t.tenantId}/file-versions/gone.txt`, { key: t.apiKey })).status, 404, 'a deleted file is gone for good');
      assert.deepEqual(copies(h).primary.length, 1);
      assert.deepEqual(copies(h).replica.length, 1);
      const versions = await h.call('GET', `${records}/records/r/versions`, { key: t.apiKey });
      assert.deepEqual((versions.json.versions as { version: number }[]).map((v) => v.version), [2], 'record versions follow the same window');
      const audit = await h.call('GET', `/v1/tenants/${t.tenantId}/audit?limit=500`, { key: t.apiKey });
      assert.ok((audit.json.events as { action: string; actor: string }[]).some((e) => e.action === 'retention.expire' && e.actor === 'system:lifecycle'));
    });
  });
});
