import type { BatchState, Tx } from './group-commit.js';

/** The head of a tenant's audit chain and change log, as the current batch sees it. */
export interface TenantHead {
  auditSeq: number;
  auditHash: Buffer;
  changeSeq: number;
}

export const GENESIS_HASH = Buffer.alloc(32);

/**
 * Loads a tenant's head once per batch (locking its row on PostgreSQL, so instances that share the
 * database append one at a time) and arranges for it to be written back before the commit.
 */
export async function tenantHead(tx: Tx, batch: BatchState, tenantId: string): Promise<TenantHead> {
  const key = `head:${tenantId}`;
  const cached = batch.get<TenantHead>(key);
  if (cached) return cached;
  let query = tx
    .selectFrom('tenant_heads')
    .select(['audit_seq', 'audit_hash', 'change_seq'])
    .where('tenant_id', '=', tenantId);
  if (batch.dialect === 'postgres') query = query.forUpdate();
  const row = await query.executeTakeFirst();
  const head: TenantHead = row
    ? { auditSeq: Number(row.audit_seq), auditHash: row.audit_hash, changeSeq: Number(row.change_seq) }
    : { auditSeq: 0, auditHash: GENESIS_HASH, changeSeq: 0 };
  return head;
}

/** Records a moved head for the rest of the batch and for the write before the commit. */
export function advanceHead(batch: BatchState, tenantId: string, head: TenantHead): void {
  batch.set(`head:${tenantId}`, head, async (tx) => {
    const values = {
      audit_seq: head.auditSeq,
      audit_hash: head.auditHash,
      change_seq: head.changeSeq,
    };
    await tx
      .insertInto('tenant_heads')
      .values({ tenant_id: tenantId, ...values })
      .onConflict((oc) => oc.column('tenant_id').doUpdateSet(values))
      .execute();
  });
}
