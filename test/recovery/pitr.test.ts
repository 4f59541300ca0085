import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { takeBackup } from '../../src/core/recovery/backup.js';
import { listSegments } from '../../src/core/recovery/catalog.js';
import { restoreDatabase, restoreInto, type RestoreTarget } from '../../src/core/recovery/restore.js';
import { shippingStatus } from '../../src/core/recovery/ship.js';
import { RecoveryError } from '../../src/errors.js';
import { ownedDigest } from '../../src/store/db/owned-rows.js';
import { describeFound, filesUnder, marker, scanFiles } from '../support/disk-scan.js';
import { emptyDatabase, shippedCheckpoint, waitShipped } from '../support/recovery.js';
import { DRIVERS, startHarness, stopPostgres, type Driver, type Harness } from '../support/strongroom.js';

after(stopPostgres);

for (const driver of DRIVERS) {
  describe(`point-in-time restore on ${driver}`, () => {
    let h: Harness;
    let a: { tenantId: string; apiKey: string };
    let b: { tenantId: string; apiKey: string };
    // Each write happens a second after the one before, so every checkpoint has its own time.
    let now = Date.parse('2026-11-29T10:00:00Z');
    /** The tenant's state (digest) right after each write, by sequence and time. */
    const checkpoints: { seq: number; at: number; digest: string }[] = [];
    let timeline: string;

    before(async () => {
      h = await startHarness(driver, { now: () => now });
      a = await h.tenant('pitr-a');
      b = await h.tenant('pitr-b');
      // The shipper's first use of A's data key is audited in A's log; once that is shipped, nothing
      // but this test writes to A, so a time target is exactly the state after a write.
      assert.equal((await h.call('PUT', `/v1/tenants/${a.tenantId}/collections/people`, { key: a.apiKey, body: { indexes: [{ field: 'email' }] } })).status, 201);
      await waitShipped(h);
      await waitShipped(h);
    });
    after(() => h.close());

    async function write(method: string, path: string, options: { body?: unknown; rawBody?: string; headers?: Record<string, string> }, key = a.apiKey) {
      now += 1000;
      const res = await h.call(method, path, { key, ...options });
      assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${res.text}`);
      if (key === a.apiKey) checkpoints.push({ ...(await shippedCheckpoint(h, a.tenantId)), at: now });
    }

    async function restoredDigest(into: Driver, target: RestoreTarget, tenant?: string): Promise<{ digest: string; seq: number; other: string }> {
      const db = await emptyDatabase(into);
      try {
        const result = await restoreInto(h.core, db, { target, timeline, now, ...(tenant ? { tenant } : {}) });
        return { digest: await ownedDigest(db.writer, a.tenantId), seq: result.seq, other: await ownedDigest(db.writer, b.tenantId) };
      } finally {
        await db.close();
      }
    }

    test('records and files written, updated and deleted around a backup', async () => {
      const base = `/v1/tenants/${a.tenantId}`;
      for (let i = 0; i < 5; i++) await write('PUT', `${base}/collections/people/records/p${i}`, { body: { email: `p${i}@example.com`, n: i } });
      await write('PUT', `${base}/files/docs/a.txt`, { rawBody: 'first', headers: { 'content-type': 'text/plain' } });
      const backup = await takeBackup(h.core);
      assert.ok(backup.parts.some((p) => p.name === a.tenantId && p.rows.records === 5 && p.rows.file_versions === 1));
      for (let i = 0; i < 3; i++) await write('PUT', `${base}/collections/people/records/p${i}`, { body: { email: `q${i}@example.com`, n: i * 10 } });
      await write('PUT', `${base}/files/docs/a.txt`, { rawBody: 'second', headers: { 'content-type': 'text/plain' } });
      await write('DELETE', `${base}/collections/people/records/p4`, {});
      await write('DELETE', `${base}/files/docs/a.txt`, {});
      await write('PUT', `/v1/tenants/${b.tenantId}/collections/other`, { body: { indexes: [] } }, b.apiKey);
      await write('PUT', `${base}/collections/people/records/p9`, { body: { email: 'late@example.com' } });
      timeline = (await shippingStatus(h.core)).timeline;
      assert.equal(new Set(checkpoints.map((c) => c.digest)).size, checkpoints.length, 'every write changed the tenant');
    });

    test('every sequence restores the tenant exactly, into either database, whole or the tenant alone', async () => {
      for (const [i, point] of checkpoints.entries()) {
        const into = i % 2 === 0 ? driver : driver === 'sqlite' ? 'postgres' : 'sqlite';
        const whole = await restoredDigest(into, { seq: point.seq });
        assert.equal(whole.seq, point.seq);
        assert.equal(whole.digest, point.digest, `whole database into ${into} at ${point.seq}`);
        if (i % 3 === 0) {
          const alone = await restoredDigest(into, { seq: point.seq }, a.tenantId);
          assert.equal(alone.digest, point.digest, `tenant alone at ${point.seq}`);
          assert.equal(alone.other, await ownedDigest(h.core.db.reader, 'nobody'), "a tenant restore holds nothing of another tenant's");
        }
      }
    });

    test('a time restores the last operation committed at or before it', async () => {
      for (const point of checkpoints.slice(1, 8)) {
        assert.equal((await restoredDigest(driver, { time: point.at })).digest, point.digest, `at ${new Date(point.at).toISOString()}`);
        const before = checkpoints[checkpoints.indexOf(point) - 1]!;
        assert.equal((await restoredDigest(driver, { time: point.at - 1 })).digest, before.digest, 'a millisecond earlier: the write before');
      }
    });

    test('a whole-database restore starts a new timeline that records where it branched', async () => {
      const db = await emptyDatabase(driver);
      try {
        const point = checkpoints[4]!;
        const result = await restoreDatabase(h.core, db, { target: { seq: point.seq }, timeline, now });
        assert.notEqual(result.newTimeline, timeline);
        const head = await db.writer.selectFrom('journal_head').selectAll().executeTakeFirstOrThrow();
        assert.deepEqual({ timeline: head.timeline, seq: Number(head.seq) }, { timeline: result.newTimeline, seq: point.seq });
        const heads = await db.writer.selectFrom('tenant_heads').select(['tenant_id', 'audit_seq']).where('tenant_id', '=', a.tenantId).executeTakeFirstOrThrow();
        assert.ok(Number(heads.audit_seq) > 0, 'audit chain heads are rebuilt');
        assert.ok(await h.core.blobs.head(`timelines/${result.newTimeline}`), 'the timeline is recorded in the blob store');
      } finally {
        await db.close();
      }
    });

    test('segments and backups hold no plaintext of the records, files or their names', async () => {
      const secret = marker('pitr-body');
      const path = `${marker('pitr-path')}.txt`;
      const base = `/v1/tenants/${a.tenantId}`;
      assert.equal((await h.call('PUT', `${base}/collections/people/records/${marker('pitr-id')}`, { key: a.apiKey, body: { email: `${secret}@example.com`, note: secret } })).status, 201);
      assert.equal((await h.call('PUT', `${base}/files/${path}`, { key: a.apiKey, rawBody: secret, headers: { 'content-type': 'text/plain' } })).status, 201);
      await waitShipped(h);
      await takeBackup(h.core);
      const stored = [...filesUnder(h.config.blobs.primary.path!), ...filesUnder(h.config.blobs.replica.path!)];
      assert.ok(stored.some((f) => f.includes('/journal/')) && stored.some((f) => f.includes('/backups/')), 'segments and backups were written');
      const scan = scanFiles(stored, [secret, path]);
      assert.deepEqual(scan.found, new Map(), `plaintext in the recovery store: ${describeFound(scan.found)}`);
    });

    test('a sequence inside a shipped segment restores too, not only the end of one', async () => {
      const people = `/v1/tenants/${a.tenantId}/collections/people/records`;
      const before = await waitShipped(h);
      // Sent at once, committed in one or two groups: the shipper puts several in one segment.
      const written = await Promise.all([0, 1, 2, 3].map((i) => h.call('PUT', `${people}/m${i}`, { key: a.apiKey, body: { email: `m${i}@example.com`, n: i } })));
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
          const rows = await target.writer.selectFrom('records').select('record_key').where('tenant_id', '=', a.tenantId).execute();
          counts.push(rows.length);
        } finally {
          await target.close();
        }
      }
      assert.ok(counts[0]! < counts.at(-1)!, `each point holds what was written by then: ${counts.join(', ')} records`);
    });

    test('a target outside the window fails clearly, never silently restoring another point', async () => {
      const { shippedSeq } = await shippingStatus(h.core);
      const cases: [RestoreTarget, RegExp][] = [
        [{ time: now + 60_000 }, /in the future/],
        [{ seq: shippedSeq + 1000 }, new RegExp(`ends at sequence \\d+; sequence ${shippedSeq + 1000} is not in it`)],
      ];
      for (const [target, message] of cases) {
        const db = await emptyDatabase(driver);
        try {
          await assert.rejects(restoreInto(h.core, db, { target, timeline, now }), (error: unknown) => error instanceof RecoveryError && message.test(error.message));
          assert.equal((await db.writer.selectFrom('tenants').select('id').execute()).length, 0, 'nothing was restored');
        } finally {
          await db.close();
        }
      }
      const db = await emptyDatabase(driver);
      try {
        await restoreInto(h.core, db, { target: { latest: true }, timeline, now });
        await assert.rejects(restoreInto(h.core, db, { target: { latest: true }, timeline, now }), /not empty/);
      } finally {
        await db.close();
      }
    });
  });
}
