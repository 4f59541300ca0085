import { RecoveryError, NotFoundError } from '../../errors.js';
import { authorize } from '../../policy/authorize.js';
import { JOURNALED_TABLES } from '../../store/db/journaled-tables.js';
import { ownedRows } from '../../store/db/owned-rows.js';
import type { Tables } from '../../store/db/tables.js';
import { auditInTx, plainTarget } from '../audit-events.js';
import type { Actor, Core, Principal, RequestMeta } from '../context.js';
import { restoreInto, type RestoreTarget } from './restore.js';
import { withScratchDatabase } from './scratch.js';
import { shippingStatus, shipThrough } from './ship.js';

/**
 * What an in-place tenant restore replaces: the tenant's records and files. Its members, keys,
 * grants, webhooks and audit log stay as they are: a restore must not bring back a revoked key or a
 * removed member, and the audit log is history, never rewound.
 */
export const RESTORED_TABLES = ['collections', 'records', 'record_versions', 'record_index', 'files', 'file_versions', 'file_folders'] as const;

export interface TenantRestoreResult {
  tenantId: string;
  /** The sequence and time of the state the tenant's records and files now hold. */
  seq: number;
  at: string | null;
  /** Restore to this sequence to undo: it holds the tenant as it was just before this restore. */
  undoBookmark: number;
  rows: Record<string, number>;
}

const INSERT_ROWS = 200;

/**
 * Restores one tenant's records and files, in place, to a point in time, while the other tenants
 * keep working: the tenant is restored into a scratch database from the backups and the shipped
 * log (so the shipper first ships through the target), verified there (its audit chain, every file
 * version's blob present), and then swapped in with one transaction, audited in the tenant's log.
 */
export async function restoreTenantInPlace(core: Core, actor: Actor, meta: RequestMeta, tenantId: string, target: RestoreTarget): Promise<TenantRestoreResult> {
  const tenant = await core.db.reader.selectFrom('tenants').select('status').where('id', '=', tenantId).executeTakeFirst();
  if (!tenant) throw new NotFoundError('tenant not found');
  const status = await shippingStatus(core);
  if ('seq' in target && target.seq > status.journalSeq) throw new RecoveryError(`sequence ${target.seq} has not been written yet (the journal is at ${status.journalSeq})`);
  await shipThrough(core, 'seq' in target ? target.seq : status.journalSeq);
  return withScratchDatabase(async (scratch) => {
    const restored = await restoreInto(core, scratch, { target, timeline: status.timeline, tenant: tenantId, now: core.now() });
    await assertBlobsPresent(core, scratch.writer, tenantId);
    const rows: Record<string, number> = {};
    const swapped = await core.committer.submitJournaled(tenantId, async (tx, batch) => {
      for (const name of RESTORED_TABLES) {
        await tx.deleteFrom(name).where('tenant_id', '=', tenantId).execute();
        rows[name] = 0;
        let page: Record<string, unknown>[] = [];
        const flush = async () => {
          if (page.length > 0) await tx.insertInto(name).values(page as never).execute();
          page = [];
        };
        for await (const row of ownedRows(scratch.writer, JOURNALED_TABLES.find((t) => t.name === name)!, tenantId)) {
          page.push(row);
          rows[name] += 1;
          if (page.length >= INSERT_ROWS) await flush();
        }
        await flush();
      }
      // Rows restored from before a data-key rotation are sealed under a key that may have retired;
      // it is needed again, and the re-encryption job moves them to the current key and retires it anew.
      await tx.updateTable('data_keys').set({ retired_at: null }).where('tenant_id', '=', tenantId).where('retired_at', 'is not', null).execute();
      const at = restored.at === null ? 'the beginning' : new Date(restored.at).toISOString();
      await auditInTx(tx, batch, core, actor, meta, {
        tenantId,
        action: 'tenant.restore',
        target: plainTarget(`records and files restored to sequence ${restored.seq} (${at})`),
        result: 'ok',
      });
      return { seq: restored.seq, at: restored.at === null ? null : new Date(restored.at).toISOString() };
    });
    // The swap is one journaled operation (it writes an audit event at least): the sequence before
    // its first entry holds the tenant as it was.
    return { tenantId, ...swapped.value, undoBookmark: swapped.journal!.first - 1, rows };
  });
}

/** Every file version of the restored tenant still has its blob: a restore never points at missing content. */
async function assertBlobsPresent(core: Core, db: import('kysely').Kysely<Tables>, tenantId: string): Promise<void> {
  const missing: string[] = [];
  for await (const row of ownedRows(db, JOURNALED_TABLES.find((t) => t.name === 'file_versions')!, tenantId)) {
    const key = row.object_key as string | null;
    if (key !== null && !(await core.blobs.head(key))) missing.push(key);
  }
  if (missing.length > 0) throw new RecoveryError(`${missing.length} file versions of the restore point have lost their content (first: ${missing[0]})`);
}

/** An operator's in-place restore over the API. */
export function restoreTenantAsOperator(core: Core, principal: Principal, meta: RequestMeta, tenantId: string, target: RestoreTarget): Promise<TenantRestoreResult> {
  authorize(principal, 'ops.restore', { tenantId });
  return restoreTenantInPlace(core, principal, meta, tenantId, target);
}
