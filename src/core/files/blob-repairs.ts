import type { ReplicaMiss } from '../../store/blob/replicated.js';
import { repairDelete, scrubObject } from '../../store/blob/scrub.js';
import { SYSTEM_CHAIN } from '../audit-events.js';
import { authorize } from '../../policy/authorize.js';
import type { Core, Principal } from '../context.js';

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Records a copy a replica missed, before the write is acknowledged (the replicated store awaits
 * this): the repair job makes it later, and the backlog is a metric.
 */
export async function queueRepair(core: Core, miss: ReplicaMiss): Promise<void> {
  const row = { enqueued_at: core.now(), attempts: 0, last_error: messageOf(miss.error).slice(0, 500) };
  await core.committer.submit(SYSTEM_CHAIN, (tx) =>
    tx
      .insertInto('blob_repairs')
      .values({ object_key: miss.key, backend: miss.backend, op: miss.op, ...row })
      .onConflict((oc) => oc.columns(['object_key', 'backend', 'op']).doUpdateSet(row))
      .execute(),
  );
}

/** Copies awaiting repair: the replication backlog. */
export async function repairBacklog(core: Core): Promise<number> {
  const row = await core.db.reader.selectFrom('blob_repairs').select((eb) => eb.fn.countAll().as('n')).executeTakeFirst();
  return Number(row?.n ?? 0);
}

export interface StorageStatus {
  backends: string[];
  writePolicy: string;
  /** Copies a replica missed, waiting for the repair job. */
  repairBacklog: number;
  /** How far the replica is behind: the age of the oldest missed copy, 0 when none is. */
  replicationLagSeconds: number;
  /** Since this process started. */
  degradedWrites: number;
  degradedDeletes: number;
  fallbackReads: number;
}

/** Replication health for operators (and, later, the checks that page someone). */
export async function storageStatus(core: Core, principal: Principal): Promise<StorageStatus> {
  authorize(principal, 'ops.read', { tenantId: null });
  const row = await core.db.reader
    .selectFrom('blob_repairs')
    .select((eb) => [eb.fn.countAll().as('n'), eb.fn.min('enqueued_at').as('oldest')])
    .executeTakeFirst();
  const oldest = row?.oldest === null || row?.oldest === undefined ? null : Number(row.oldest);
  return {
    backends: core.blobs.backends.map((b) => b.name),
    writePolicy: core.blobs.writePolicy,
    repairBacklog: Number(row?.n ?? 0),
    replicationLagSeconds: oldest === null ? 0 : Math.max(0, Math.round((core.now() - oldest) / 1000)),
    ...core.blobs.stats,
  };
}

/** The size and digest every copy of an object must have, from its file version; null once no version refers to it. */
async function expectedCopy(core: Core, objectKey: string) {
  const row = await core.db.reader
    .selectFrom('file_versions')
    .select(['stored_size', 'stored_sha256'])
    .where('object_key', '=', objectKey)
    .where('stored_sha256', 'is not', null)
    .executeTakeFirst();
  return row ? { size: Number(row.stored_size), sha256: row.stored_sha256! } : null;
}

/**
 * Works through the repair queue: a missed put is repaired from a healthy copy, a missed delete is
 * retried. An entry leaves the queue once its backend is right; otherwise its attempt is counted.
 */
export async function runRepairs(core: Core, limit = 1000): Promise<{ repaired: number; pending: number }> {
  const queued = await core.db.reader.selectFrom('blob_repairs').selectAll().orderBy('enqueued_at').limit(limit).execute();
  let repaired = 0;
  for (const entry of queued) {
    const backends = core.blobs.backends.filter((b) => b.name === entry.backend);
    let done = false;
    let error = '';
    const expected = entry.op === 'put' ? await expectedCopy(core, entry.object_key) : null;
    if (expected === null) {
      // A delete, or a put whose file version is gone meanwhile: the copy must not exist.
      const result = await repairDelete(backends, entry.object_key);
      done = result.copies.every((c) => c.status === 'deleted');
      error = result.copies.map((c) => messageOf(c.error ?? '')).join('; ');
    } else {
      const result = await scrubObject(core.blobs.backends, entry.object_key, expected);
      const copy = result.copies.find((c) => c.backend === entry.backend);
      done = copy?.status === 'ok' || copy?.status === 'repaired';
      error = messageOf(copy?.error ?? copy?.status ?? 'no such backend');
    }
    await core.committer.submit(SYSTEM_CHAIN, async (tx) => {
      if (done) {
        await tx.deleteFrom('blob_repairs').where('object_key', '=', entry.object_key).where('backend', '=', entry.backend).where('op', '=', entry.op).execute();
      } else {
        await tx
          .updateTable('blob_repairs')
          .set({ attempts: entry.attempts + 1, last_error: error.slice(0, 500) })
          .where('object_key', '=', entry.object_key)
          .where('backend', '=', entry.backend)
          .where('op', '=', entry.op)
          .execute();
      }
    });
    if (done) repaired += 1;
  }
  return { repaired, pending: await repairBacklog(core) };
}

/**
 * Verifies every stored object on both backends against the digest recorded when it was written,
 * repairing missing or corrupt copies from a healthy one. Returns what it found.
 */
export async function scrubAll(core: Core): Promise<{ objects: number; repaired: number; unavailable: number; unrecoverable: number }> {
  const totals = { objects: 0, repaired: 0, unavailable: 0, unrecoverable: 0 };
  let after = '';
  for (;;) {
    const rows = await core.db.reader
      .selectFrom('file_versions')
      .select(['object_key', 'stored_size', 'stored_sha256'])
      .distinct()
      .where('object_key', '>', after)
      .where('stored_sha256', 'is not', null)
      .orderBy('object_key')
      .limit(500)
      .execute();
    if (rows.length === 0) return totals;
    for (const row of rows) {
      const result = await scrubObject(core.blobs.backends, row.object_key!, { size: Number(row.stored_size), sha256: row.stored_sha256! });
      totals.objects += 1;
      for (const copy of result.copies) {
        if (copy.status === 'repaired') totals.repaired += 1;
        if (copy.status === 'unavailable') totals.unavailable += 1;
        if (copy.status === 'unrecoverable') totals.unrecoverable += 1;
      }
      after = row.object_key!;
    }
  }
}
