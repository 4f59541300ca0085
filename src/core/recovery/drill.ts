import { randomInt } from 'node:crypto';
import { randomId } from '../ids.js';
import { ownedDigest } from '../../store/db/owned-rows.js';
import { auditInTx, NO_REQUEST, plainTarget, SYSTEM_CHAIN } from '../audit-events.js';
import type { Actor, Core } from '../context.js';
import { enqueueNotification } from '../notifications/outbox.js';
import { restoreInto } from './restore.js';
import { withScratchDatabase } from './scratch.js';
import { SHREDDED_STATUSES } from '../tenants.js';
import { shipThrough } from './ship.js';

const DRILL: Actor = { kind: 'system', name: 'recovery.drill' };

export type DrillKind = 'full' | 'tenant';

export interface DrillResult {
  drillId: string;
  kind: DrillKind;
  tenantId: string | null;
  ok: boolean;
  seq: number;
  backupId: string | null;
  rows: number;
  entries: number;
  durationMs: number;
  detail: string;
}

/**
 * A restore drill: the live database's digests at one sequence (read in one snapshot), then a
 * restore of that sequence from the blob store alone into a scratch database, verified as every
 * restore is, and compared owner by owner with those digests. The result is recorded; a failure is
 * also an alert (`recovery.drill_failed`) for the operators.
 */
export async function runDrill(core: Core, kind: DrillKind, tenant?: string): Promise<DrillResult> {
  const startedAt = core.now();
  const started = performance.now();
  const drillId = `dr_${randomId(10)}`;
  let result: Omit<DrillResult, 'drillId' | 'kind' | 'durationMs'>;
  let tenantId: string | null = null;
  try {
    const live = await core.db.snapshot(async (db) => {
      const head = await db.selectFrom('journal_head').select(['timeline', 'seq']).where('id', '=', 1).executeTakeFirstOrThrow();
      const tenants = (await db.selectFrom('tenants').select('id').where('status', 'not in', SHREDDED_STATUSES).orderBy('id').execute()).map((t) => t.id);
      if (kind === 'tenant') tenantId = tenant ?? tenants[randomInt(Math.max(1, tenants.length))] ?? null;
      const owners = kind === 'full' ? [SYSTEM_CHAIN, ...tenants] : tenantId === null ? [] : [tenantId];
      const digests = new Map<string, string>();
      for (const owner of owners) digests.set(owner, await ownedDigest(db, owner));
      return { timeline: head.timeline, seq: Number(head.seq), digests };
    });
    await shipThrough(core, live.seq);
    result = await withScratchDatabase(async (scratch) => {
      const restored = await restoreInto(core, scratch, { target: { seq: live.seq }, timeline: live.timeline, now: core.now(), ...(tenantId === null ? {} : { tenant: tenantId }) });
      const differing: string[] = [];
      for (const [owner, digest] of live.digests) if ((await ownedDigest(scratch.writer, owner)) !== digest) differing.push(owner);
      const restoredOwners = kind === 'full' ? (await scratch.writer.selectFrom('tenants').select('id').where('status', 'not in', SHREDDED_STATUSES).execute()).length + 1 : live.digests.size;
      if (restoredOwners !== live.digests.size) differing.push(`${restoredOwners} owners restored, ${live.digests.size} live`);
      return {
        tenantId,
        ok: differing.length === 0,
        seq: live.seq,
        backupId: restored.backupId,
        rows: restored.rows,
        entries: restored.entries,
        detail: differing.length === 0 ? `${live.digests.size} digests match at sequence ${live.seq}` : `differs from the live database at sequence ${live.seq}: ${differing.join(', ')}`,
      };
    });
  } catch (error) {
    result = { tenantId, ok: false, seq: 0, backupId: null, rows: 0, entries: 0, detail: error instanceof Error ? error.message : String(error) };
  }
  const drill: DrillResult = { drillId, kind, durationMs: Math.round(performance.now() - started), ...result };
  await core.committer.submit(SYSTEM_CHAIN, async (tx, batch) => {
    await tx
      .insertInto('restore_drills')
      .values({ drill_id: drillId, kind, tenant_id: drill.tenantId, started_at: startedAt, finished_at: core.now(), ok: drill.ok ? 1 : 0, seq: drill.seq, backup_id: drill.backupId, rows: drill.rows, entries: drill.entries, detail: drill.detail })
      .execute();
    await auditInTx(tx, batch, core, DRILL, NO_REQUEST, { tenantId: SYSTEM_CHAIN, action: 'recovery.drill', target: plainTarget(`${drillId} (${kind}${drill.tenantId ? ` ${drill.tenantId}` : ''}): ${drill.detail}`), result: drill.ok ? 'ok' : 'error' });
    if (!drill.ok) await enqueueNotification(tx, core.now(), { tenantId: null, event: 'recovery.drill_failed', payload: { drillId, kind, occurredAt: core.now() } });
  });
  return drill;
}
