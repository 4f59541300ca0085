import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { takeBackup } from '../../src/core/recovery/backup.js';
import { listSegments } from '../../src/core/recovery/catalog.js';
import { restoreInto } from '../../src/core/recovery/restore.js';
import { shippingStatus } from '../../src/core/recovery/ship.js';
import { ownedDigest } from '../../src/store/db/owned-rows.js';
import { emptyDatabase, waitShipped } from '../support/recovery.js';
import { DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

after(stopPostgres);

for (const driver of DRIVERS) {
  describe(`point-in-time restore on ${driver}`, () => {
    let h: Harness;
    let t: { tenantId: string; apiKey: string };
    const checkpoints: { seq: number; digest: string }[] = [];

    before(async () => {
      h = await startHarness(driver);
      t = await h.tenant('pitr');
    });
    after(() => h.close());

    async function checkpoint() {
      const seq = await waitShipped(h);
      checkpoints.push({ seq, digest: await ownedDigest(h.core.db.reader, t.tenantId) });
    }

    test('any shipped sequence restores the tenant exactly as it was, from a backup and the log', async () => {
      const base = `/v1/tenants/${t.tenantId}`;
      assert.equal((await h.call('PUT', `${base}/collections/people`, { key: t.apiKey, body: { indexes: [{ field: 'email' }] } })).status, 201);
      for (let i = 0; i < 6; i++) {
        const res = await h.call('PUT', `${base}/collections/people/records/p${i}`, { key: t.apiKey, body: { email: `p${i}@example.com`, n: i } });
        assert.equal(res.status, 201, res.text);
        await checkpoint();
      }
      const backup = await takeBackup(h.core);
      assert.ok(backup.parts.some((p) => p.name === t.tenantId && p.rows.records === 6));
      for (let i = 0; i < 4; i++) {
        const res = await h.call('PUT', `${base}/collections/people/records/p${i}`, { key: t.apiKey, body: { email: `q${i}@example.com`, n: i * 10 } });
        assert.equal(res.status, 200, res.text);
        await checkpoint();
      }
      assert.equal((await h.call('DELETE', `${base}/collections/people/records/p5`, { key: t.apiKey })).status, 204);
      await checkpoint();
      const file = await h.call('PUT', `${base}/files/docs/a.txt`, { key: t.apiKey, rawBody: 'hello', headers: { 'content-type': 'text/plain' } });
      assert.equal(file.status, 201, file.text);
      await checkpoint();

      const { timeline } = await shippingStatus(h.core);
      for (const point of checkpoints) {
        for (const into of [driver, driver === 'sqlite' ? 'postgres' : 'sqlite'] as const) {
          const target = await emptyDatabase(into);
          try {
            const result = await restoreInto(h.core, target, { target: { seq: point.seq }, timeline, now: Date.now() });
            assert.equal(result.seq, point.seq);
            assert.equal(await ownedDigest(target.writer, t.tenantId), point.digest, `restored into ${into} at ${point.seq}`);
          } finally {
            await target.close();
          }
        }
      }
    });

    test('a sequence inside a shipped segment restores too, not only the end of one', async () => {
      const people = `/v1/tenants/${t.tenantId}/collections/people/records`;
      const before = await waitShipped(h);
      // Sent at once, committed in one or two groups: the shipper puts several in one segment.
      const written = await Promise.all([0, 1, 2, 3].map((i) => h.call('PUT', `${people}/m${i}`, { key: t.apiKey, body: { email: `m${i}@example.com`, n: i } })));
      assert.deepEqual(written.map((res) => res.status), [201, 201, 201, 201]);
      const seq = await waitShipped(h);
      const { timeline } = await shippingStatus(h.core);
      const firsts = (await listSegments(h.core, timeline)).map((s) => s.first).filter((first) => first > before);
      const ranges = firsts.map((first, i) => ({ first, last: (firsts[i + 1] ?? seq + 1) - 1 }));
      const segment = ranges.find((r) => r.last > r.first);
      assert.ok(segment, `a segment holds several of the writes: ${JSON.stringify(ranges)}`);
      const counts: number[] = [];
      for (let inside = segment.first; inside <= segment.last; inside++) {
        const target = await emptyDatabase(driver);
        try {
          const result = await restoreInto(h.core, target, { target: { seq: inside }, timeline, now: Date.now() });
          assert.equal(result.seq, inside);
          const rows = await target.writer.selectFrom('records').select('record_key').where('tenant_id', '=', t.tenantId).execute();
          counts.push(rows.length);
        } finally {
          await target.close();
        }
      }
      assert.ok(counts[0]! < counts.at(-1)!, `each point holds what was written by then: ${counts.join(', ')} records`);
    });
  });
}
