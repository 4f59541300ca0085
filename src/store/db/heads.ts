import type { BatchState, Tx } from './group-commit.js';

/** The head of a tenant's audit chain, as the current batch sees it. */
export interface TenantHead {
  auditSeq: number;
  auditHash: Buffer;
}

export const GENESIS_HASH = Buffer.alloc(32);

const headKey = (tenantId: string) => `head:${tenantId}`;

/**
 * Loads the heads of every tenant a batch touches, once, at its start. On PostgreSQL their rows are
 * locked in tenant-id order, so instances sharing the database append to a chain one at a time and
 * two batches can never deadlock on each other's heads.
 */
export async function loadTenantHeads(tx: Tx, batch: BatchState, tenantIds: string[]): Promise<void> {
  let query = tx
    .selectFrom('tenant_heads')
    .select(['tenant_id', 'audit_seq', 'audit_hash'])
    .where('tenant_id', 'in', tenantIds)
    .orderBy('tenant_id');
  if (batch.dialect === 'postgres') query = query.forUpdate();
  const rows = new Map((await query.execute()).map((row) => [row.tenant_id, row]));
  for (const tenantId of tenantIds) {
    const row = rows.get(tenantId);
    batch.prime<TenantHead>(
      headKey(tenantId),
      row
        ? { auditSeq: Number(row.audit_seq), auditHash: row.audit_hash }
        : { auditSeq: 0, auditHash: GENESIS_HASH },
    );
  }
}

/** The head of a tenant's audit chain as this batch sees it. */
export function tenantHead(batch: BatchState, tenantId: string): TenantHead {
  const head = batch.get<TenantHead>(headKey(tenantId));
  if (!head) throw new Error(`an operation on tenant ${tenantId} was submitted for another tenant`);
  return head;
}

/** Records a moved head for the rest of the batch and for the write before the commit. */
export function advanceHead(batch: BatchState, tenantId: string, head: TenantHead): void {
  batch.set(headKey(tenantId), head, async (tx) => {
    const values = {
      audit_seq: head.auditSeq,
      audit_hash: head.auditHash,
    };
    await tx
      .insertInto('tenant_heads')
      .values({ tenant_id: tenantId, ...values })
      .onConflict((oc) => oc.column('tenant_id').doUpdateSet(values))
      .execute();
  });
}
