// Tampering with the recovery store is detected, never restored from. Each case damages one object
// of the blob store (on the primary and on the replica, which a read would otherwise fall back
// to), then proves that a restore fails with a RecoveryError naming what was damaged, and that a
// restore drill records the failure with that reason and alerts the operators. The object is put
// back after each case, and the intact store restores and drills clean, before and after.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { takeBackup } from '../../src/core/recovery/backup.js';
import { listSegments } from '../../src/core/recovery/catalog.js';
import { runDrill } from '../../src/core/recovery/drill.js';
import { restoreInto, type RestoreTarget } from '../../src/core/recovery/restore.js';
import { shippingStatus } from '../../src/core/recovery/ship.js';
import { RecoveryError } from '../../src/errors.js';
import { manifestObject, type BackupManifest } from '../../src/journal/backup-manifest.js';
import { damageObject, emptyDatabase, flipByte, objectCopies, waitShipped } from '../support/recovery.js';
import { DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

after(stopPostgres);

for (const driver of DRIVERS) {
  describe(`tampering with the recovery store, on ${driver}`, () => {
    let h: Harness;
    let timeline: string;
    let tenantId: string;
    let backup: BackupManifest;
    /** The segments a restore replays on top of the backup, oldest first. */
    let segments: { key: string; first: number }[];

    before(async () => {
      h = await startHarness(driver);
      const t = await h.tenant('tamper');
      tenantId = t.tenantId;
      const people = `/v1/tenants/${tenantId}/collections/people`;
      assert.equal((await h.call('PUT', people, { key: t.apiKey, body: { indexes: [{ field: 'email' }] } })).status, 201);
      const put = async (id: string, body: unknown) => {
        const res = await h.call('PUT', `${people}/records/${id}`, { key: t.apiKey, body });
        assert.ok(res.status === 200 || res.status === 201, res.text);
        // Shipped one write at a time: each lands in a segment of its own.
        await waitShipped(h);
      };
      for (let i = 0; i < 3; i++) await put(`p${i}`, { email: `p${i}@example.com`, n: i });
      backup = await takeBackup(h.core);
      for (let i = 0; i < 5; i++) await put(`p${i}`, { email: `q${i}@example.com`, n: i * 10 });
      await waitShipped(h);
      ({ timeline } = await shippingStatus(h.core));
      segments = (await listSegments(h.core, timeline)).filter((s) => s.first > backup.seq);
      assert.ok(segments.length >= 5, `${segments.length} segments after the backup`);
    });
    after(() => h.close());

    /** Restores into an empty database of the harness's kind, which is removed afterwards. */
    async function restore(target: RestoreTarget) {
      const db = await emptyDatabase(driver);
      try {
        return await restoreInto(h.core, db, { target, timeline, now: Date.now() });
      } finally {
        await db.close();
      }
    }

    /** A restore fails naming `what`, and so does a drill, which is recorded and alerted. */
    async function assertDetected(what: string, why: RegExp) {
      await assert.rejects(restore({ latest: true }), (error: unknown) => {
        assert.ok(error instanceof RecoveryError, `a RecoveryError, not ${String(error)}`);
        assert.ok(error.message.includes(what), `the error names ${what}: ${error.message}`);
        assert.match(error.message, why);
        return true;
      });
      const drill = await runDrill(h.core, 'full');
      assert.equal(drill.ok, false, `the drill fails: ${drill.detail}`);
      const recorded = await h.core.db.reader.selectFrom('restore_drills').selectAll().where('drill_id', '=', drill.drillId).executeTakeFirstOrThrow();
      assert.equal(recorded.ok, 0);
      assert.ok(recorded.detail.includes(what), `the drill's recorded reason names ${what}: ${recorded.detail}`);
      assert.match(recorded.detail, why);
      const alerts = await h.core.db.reader.selectFrom('outbox').select(['tenant_id', 'payload']).where('event_type', '=', 'recovery.drill_failed').execute();
      assert.ok(
        alerts.some((a) => a.tenant_id === null && JSON.parse(a.payload).drillId === drill.drillId),
        'the failed drill queues a recovery.drill_failed alert for the operators',
      );
    }

    async function assertIntact() {
      const restored = await restore({ latest: true });
      assert.equal(restored.backupId, backup.backupId, 'the restore starts from the backup');
      assert.ok(restored.entries > 0, 'and replays the log after it');
      const drill = await runDrill(h.core, 'full');
      assert.equal(drill.ok, true, drill.detail);
      const recorded = await h.core.db.reader.selectFrom('restore_drills').select('ok').where('drill_id', '=', drill.drillId).executeTakeFirstOrThrow();
      assert.equal(recorded.ok, 1);
    }

    test('the intact store restores, and a drill verifies it', assertIntact);

    test('a flipped byte in a segment\'s sealed chunk: the segment fails its checksum', async () => {
      const { key } = segments[2]!;
      const putBack = damageObject(h.config.blobs, key, (bytes) => flipByte(bytes, -5));
      try {
        await assertDetected(`segment ${key}`, /checksum/);
      } finally {
        putBack();
      }
    });

    test('a segment missing in the middle of the chain: a gap, though a point before it still restores', async () => {
      const missing = segments[2]!;
      const next = segments[3]!;
      const putBack = damageObject(h.config.blobs, missing.key, () => null);
      try {
        await assertDetected(`segment ${missing.key} is not in the store`, new RegExp(`gap: entries ${missing.first} to ${next.first - 1} are missing before segment ${next.key}`));
        const before = await restore({ seq: missing.first - 1 });
        assert.equal(before.seq, missing.first - 1);
      } finally {
        putBack();
      }
    });

    test("an edited backup manifest (a part's row count): the manifest fails its MAC", async () => {
      const key = manifestObject(timeline, backup.backupId);
      const putBack = damageObject(h.config.blobs, key, (bytes) => {
        const manifest = JSON.parse(bytes.toString('utf8')) as BackupManifest;
        const part = manifest.parts.find((p) => p.name === tenantId)!;
        part.rows.records = part.rows.records! + 1;
        return Buffer.from(JSON.stringify(manifest));
      });
      try {
        await assertDetected(`backup manifest ${key}`, /MAC/);
      } finally {
        putBack();
      }
    });

    test('a flipped byte in a backup part: the part fails to decrypt', async () => {
      const { object } = backup.parts.find((p) => p.name === tenantId)!;
      const putBack = damageObject(h.config.blobs, object, (bytes) => flipByte(bytes, Math.floor(bytes.length / 2)));
      try {
        await assertDetected(`backup part ${object}`, /authentication|digest/);
      } finally {
        putBack();
      }
    });

    test('a segment replaced by a copy of another valid segment: caught by its range', async () => {
      const replaced = segments[1]!;
      const copy = readFileSync(objectCopies(h.config.blobs, segments[3]!.key)[0]!);
      const putBack = damageObject(h.config.blobs, replaced.key, () => copy);
      try {
        await assertDetected(`segment ${replaced.key}`, /names another range/);
      } finally {
        putBack();
      }
    });

    test('with every object put back, the store restores and drills clean again', assertIntact);
  });
}
