import { auditInTx, plainTarget } from '../audit-events.js';
import type { Actor, Core } from '../context.js';

const LIFECYCLE: Actor = { kind: 'system', name: 'lifecycle' };
const META = { requestId: '-', sourceIp: '-' };
const BATCH = 500;

export interface RetentionResult {
  fileVersions: number;
  files: number;
  recordVersions: number;
  records: number;
  blobs: number;
}

/**
 * Removes, for one tenant, what the retention window no longer keeps: file versions non-current for
 * longer than it, files deleted for longer than it (tombstone, folder tokens and all), record versions
 * superseded for longer than it, and records deleted for longer than it. One transaction per
 * batch, with one audit event. Returns the blobs no version refers to
 * any more, for the caller to delete once the rows are gone.
 */
async function expireTenant(core: Core, tenantId: string, cutoff: number, totals: RetentionResult): Promise<string[]> {
  return core.committer.submit(tenantId, async (tx, batch) => {
    const versions = await tx
      .selectFrom('file_versions')
      .select(['path_key', 'version', 'object_key'])
      .where('tenant_id', '=', tenantId)
      .where('noncurrent_since', '<', cutoff)
      .limit(BATCH)
      .execute();
    const tombstones = await tx
      .selectFrom('files')
      .select(['path_key', 'version'])
      .where('tenant_id', '=', tenantId)
      .where('deleted', '=', 1)
      .where('updated_at', '<', cutoff)
      .limit(BATCH)
      .execute();
    const released = versions.map((v) => v.object_key);
    for (const v of versions) {
      await tx.deleteFrom('file_versions').where('tenant_id', '=', tenantId).where('path_key', '=', v.path_key).where('version', '=', v.version).execute();
    }
    for (const f of tombstones) {
      // Its earlier versions went non-current when it was deleted, so they are expiring too.
      const left = await tx.selectFrom('file_versions').select('object_key').where('tenant_id', '=', tenantId).where('path_key', '=', f.path_key).execute();
      released.push(...left.map((l) => l.object_key));
      await tx.deleteFrom('file_versions').where('tenant_id', '=', tenantId).where('path_key', '=', f.path_key).execute();
      await tx.deleteFrom('file_folders').where('tenant_id', '=', tenantId).where('path_key', '=', f.path_key).execute();
      await tx.deleteFrom('files').where('tenant_id', '=', tenantId).where('path_key', '=', f.path_key).execute();
    }
    const superseded = await tx
      .deleteFrom('record_versions as rv')
      .where('rv.tenant_id', '=', tenantId)
      .where(({ exists, selectFrom }) =>
        exists(
          selectFrom('record_versions as n')
            .select('n.version')
            .whereRef('n.tenant_id', '=', 'rv.tenant_id')
            .whereRef('n.collection', '=', 'rv.collection')
            .whereRef('n.record_key', '=', 'rv.record_key')
            .where('n.created_at', '<', cutoff)
            .where(({ eb, ref }) => eb('n.version', '=', eb(ref('rv.version'), '+', 1))),
        ),
      )
      .executeTakeFirst();
    const goneRecords = await tx.selectFrom('records').select(['collection', 'record_key', 'version']).where('tenant_id', '=', tenantId).where('deleted', '=', 1).where('updated_at', '<', cutoff).limit(BATCH).execute();
    for (const r of goneRecords) {
      await tx.deleteFrom('record_versions').where('tenant_id', '=', tenantId).where('collection', '=', r.collection).where('record_key', '=', r.record_key).execute();
      await tx.deleteFrom('records').where('tenant_id', '=', tenantId).where('collection', '=', r.collection).where('record_key', '=', r.record_key).execute();
    }
    const counts = { fileVersions: versions.length, files: tombstones.length, recordVersions: Number(superseded.numDeletedRows), records: goneRecords.length };
    if (Object.values(counts).some((n) => n > 0)) {
      const target = plainTarget(`file-versions:${counts.fileVersions} files:${counts.files} record-versions:${counts.recordVersions} records:${counts.records} older-than:${new Date(cutoff).toISOString()}`);
      await auditInTx(tx, batch, core, LIFECYCLE, META, { tenantId, action: 'retention.expire', target, result: 'ok' });
    }
    totals.fileVersions += counts.fileVersions;
    totals.files += counts.files;
    totals.recordVersions += counts.recordVersions;
    totals.records += counts.records;
    const candidates = [...new Set(released.filter((k): k is string => k !== null))];
    const stillUsed = candidates.length === 0 ? [] : await tx.selectFrom('file_versions').select('object_key').where('object_key', 'in', candidates).execute();
    const used = new Set(stillUsed.map((r) => r.object_key));
    return candidates.filter((k) => !used.has(k));
  });
}

/**
 * The lifecycle job: applies the retention window (`files.retentionDays`) to every tenant, then
 * deletes the blobs nothing refers to any more from both backends (a backend that misses the delete
 * gets it through the repair queue).
 */
export async function applyRetention(core: Core): Promise<RetentionResult> {
  const cutoff = core.now() - core.files.retentionMs;
  const totals: RetentionResult = { fileVersions: 0, files: 0, recordVersions: 0, records: 0, blobs: 0 };
  const tenants = await core.db.reader.selectFrom('tenants').select('id').orderBy('id').execute();
  for (const { id } of tenants) {
    for (;;) {
      const before = totals.fileVersions + totals.files + totals.records;
      const orphans = await expireTenant(core, id, cutoff, totals);
      for (const key of orphans) await core.blobs.delete(key);
      totals.blobs += orphans.length;
      if (totals.fileVersions + totals.files + totals.records - before < BATCH) break;
    }
  }
  return totals;
}
