import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Principal } from '../../src/core/context.js';
import { takeBackup } from '../../src/core/recovery/backup.js';
import { pruneRecovery } from '../../src/core/recovery/prune.js';
import { restoreInto } from '../../src/core/recovery/restore.js';
import { shippingStatus } from '../../src/core/recovery/ship.js';
import { recoveryStatus } from '../../src/core/recovery/status.js';
import { RecoveryError } from '../../src/errors.js';
import { emptyDatabase, shippedCheckpoint, waitShipped } from '../support/recovery.js';
import { DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

after(stopPostgres);

const SRE: Principal = { kind: 'operator', operatorId: 'op_drills', roles: ['sre'], grant: null };
const DAY = 86_400_000;

for (const driver of DRIVERS) {
  describe(`drills and retention on ${driver}`, () => {
    let h: Harness;
    let t: { tenantId: string; apiKey: string };
    let now = Date.parse('2026-11-01T00:00:00Z');

    before(async () => {
      h = await startHarness(driver, { now: () => now, env: { STRONGROOM_RECOVERY__DRILL_FULL_HOURS: '24', STRONGROOM_RECOVERY__DRILL_TENANT_HOURS: '1' } });
      t = await h.tenant('drills');
      await h.tenant('other');
    });
    after(() => h.close());

    const put = async (id: string, n: number) => {
      const res = await h.call('PUT', `/v1/tenants/${t.tenantId}/collections/c/records/${id}`, { key: t.apiKey, body: { n } });
      assert.ok(res.status < 300, res.text);
    };

    /** Runs a job of the server's runner to completion (the lease may be busy for a moment). */
    async function runJob(name: string): Promise<string> {
      for (;;) {
        const result = await h.server.jobs.runNow(name);
        if (result !== null) return result;
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    test('the scheduled drills restore from the blob store, match the live database, and the API shows when', async () => {
      assert.equal((await h.call('PUT', `/v1/tenants/${t.tenantId}/collections/c`, { key: t.apiKey, body: { indexes: [] } })).status, 201);
      for (let i = 0; i < 5; i++) await put(`r${i}`, i);
      assert.equal((await recoveryStatus(h.core, SRE)).drills.lastVerifiedRestoreAgeSeconds, null, 'no drill yet');
      await runJob('recovery.backup');
      await put('r0', 100);
      assert.match(await runJob('recovery.drill-full'), /^verified: 3 digests match at sequence \d+$/);
      now += 1000;
      assert.match(await runJob('recovery.drill-tenant'), /^verified: 1 digests match/);
      now += 90_000;
      const status = await recoveryStatus(h.core, SRE);
      assert.equal(status.drills.lastVerifiedRestoreAgeSeconds, 90);
      assert.deepEqual(status.drills.recent.map((d) => [d.kind, d.ok]), [['tenant', true], ['full', true]]);
      assert.equal(status.backups.count, 1);
      assert.equal(status.shipping.pendingEntries >= 0, true);
      const events = await h.core.db.reader.selectFrom('audit_events').select(['action', 'result']).where('tenant_id', '=', '_system').where('action', 'in', ['recovery.drill', 'backup.take']).execute();
      assert.deepEqual(events.map((e) => `${e.action}:${e.result}`).sort(), ['backup.take:ok', 'recovery.drill:ok', 'recovery.drill:ok']);
      assert.equal((await h.core.db.reader.selectFrom('outbox').select('id').where('event_type', '=', 'recovery.drill_failed').execute()).length, 0);
    });

    test('retention keeps the window restorable and removes only what a newer backup covers', async () => {
      // From here the test moves the clock by days: the scheduled jobs stop, so only the test backs up and ships.
      await h.server.jobs.stop();
      const { timeline } = await shippingStatus(h.core);
      const early = await shippedCheckpoint(h, t.tenantId);
      now += DAY;
      await put('r1', 201);
      await waitShipped(h);
      const first = await takeBackup(h.core);
      // Nothing is old enough: the window (7 days) has not reached the first backups yet.
      assert.deepEqual(await pruneRecovery(h.core, { segmentRetentionMs: 7 * DAY, backupRetentionMs: 30 * DAY }), { backups: 0, segments: 0 });
      now += 8 * DAY;
      await put('r2', 202);
      const inWindow = await shippedCheckpoint(h, t.tenantId);
      await takeBackup(h.core);
      now += DAY;
      // The window now opens after `first`: it is the anchor, kept with everything after it; the
      // backup before it is younger than 30 days, so it stays too; the segments before `first` go.
      const pruned = await pruneRecovery(h.core, { segmentRetentionMs: 7 * DAY, backupRetentionMs: 30 * DAY });
      assert.equal(pruned.backups, 0);
      assert.ok(pruned.segments > 0, 'segments the anchor holds are removed');
      const restore = async (seq: number) => {
        const db = await emptyDatabase(driver);
        try {
          return await restoreInto(h.core, db, { target: { seq }, timeline, now });
        } finally {
          await db.close();
        }
      };
      assert.equal((await restore(inWindow.seq)).seq, inWindow.seq, 'a point in the window restores');
      assert.equal((await restore(first.seq)).backupId, first.backupId, 'the anchor itself restores');
      await assert.rejects(restore(early.seq + 1), (error: unknown) => error instanceof RecoveryError && /gap|window/.test(error.message), 'a point before the anchor whose log is gone fails clearly');
      now += 30 * DAY;
      await put('r3', 203);
      await waitShipped(h);
      await takeBackup(h.core);
      now += 8 * DAY;
      const later = await pruneRecovery(h.core, { segmentRetentionMs: 7 * DAY, backupRetentionMs: 30 * DAY });
      // The new anchor is the last backup; the three before it are all older than 30 days.
      assert.equal(later.backups, 3, 'backups older than 30 days and before the new anchor go');
      const status = await recoveryStatus(h.core, SRE);
      assert.equal(status.backups.count, 1, 'the anchor stays');
      assert.equal((await restore(status.backups.latest!.seq)).backupId, status.backups.latest!.backupId, 'and restores');
      const pruneEvents = await h.core.db.reader.selectFrom('audit_events').select('action').where('tenant_id', '=', '_system').where('action', '=', 'recovery.prune').execute();
      assert.equal(pruneEvents.length, 2);
    });
  });
}
