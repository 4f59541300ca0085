import type { BatchState, Tx } from '../store/db/group-commit.js';
import { advanceHead, tenantHead } from '../store/db/heads.js';
import { chainHash, type AuditEvent } from './chain.js';

/** Appends an event to its tenant's chain inside the caller's transaction; returns its sequence number. */
export async function appendAuditEvent(tx: Tx, batch: BatchState, event: AuditEvent): Promise<number> {
  const head = tenantHead(batch, event.tenantId);
  const seq = head.auditSeq + 1;
  const hash = chainHash(head.auditHash, seq, event);
  await tx
    .insertInto('audit_events')
    .values({
      tenant_id: event.tenantId,
      seq,
      at: event.at,
      actor: event.actor,
      action: event.action,
      target: event.target,
      result: event.result,
      request_id: event.requestId,
      source_ip: event.sourceIp,
      prev_hash: head.auditHash,
      hash,
    })
    .execute();
  advanceHead(batch, event.tenantId, { ...head, auditSeq: seq, auditHash: hash });
  return seq;
}
