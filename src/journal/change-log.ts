import type { BatchState, Tx } from '../store/db/group-commit.js';
import { advanceHead, tenantHead } from '../store/db/heads.js';

export type ChangeOperation = 'collection.put' | 'record.put' | 'record.delete' | 'record.expire' | 'file.put' | 'file.delete' | 'file.expire';

/**
 * One change-log entry: enough to replay a tenant alone, in order, without the rest of the database.
 * `payload` is ciphertext (a record body and its blind-index tokens) or non-secret metadata.
 */
export interface ChangeEntry {
  tenantId: string;
  at: number;
  op: ChangeOperation;
  collection: string;
  recordKey: Buffer;
  version: number;
  payload: Buffer;
}

/** Appends in the caller's transaction, so the entry exists exactly when the change does. */
export async function appendChange(tx: Tx, batch: BatchState, entry: ChangeEntry): Promise<number> {
  const head = tenantHead(batch, entry.tenantId);
  const seq = head.changeSeq + 1;
  await tx
    .insertInto('change_log')
    .values({
      tenant_id: entry.tenantId,
      seq,
      at: entry.at,
      op: entry.op,
      collection: entry.collection,
      record_key: entry.recordKey,
      version: entry.version,
      payload: entry.payload,
    })
    .execute();
  advanceHead(batch, entry.tenantId, { ...head, changeSeq: seq });
  return seq;
}
