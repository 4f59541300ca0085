import { timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Tables } from '../store/db/tables.js';
import { GENESIS_HASH } from '../store/db/heads.js';
import { chainHash } from './chain.js';

export type AuditVerification =
  | { ok: true; tenantId: string; events: number }
  | { ok: false; tenantId: string; events: number; seq: number; reason: string };

const PAGE = 1000;

/**
 * Walks a tenant's chain from the first event: every sequence number present and in order, every
 * link pointing at the previous hash, every hash recomputing, and the last one matching the head.
 */
export async function verifyAuditChain(db: Kysely<Tables>, tenantId: string): Promise<AuditVerification> {
  let expectedSeq = 1;
  let prevHash: Buffer = GENESIS_HASH;
  const fail = (seq: number, reason: string): AuditVerification => ({
    ok: false,
    tenantId,
    events: expectedSeq - 1,
    seq,
    reason,
  });
  for (;;) {
    const rows = await db
      .selectFrom('audit_events')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('seq', '>=', expectedSeq)
      .orderBy('seq')
      .limit(PAGE)
      .execute();
    for (const row of rows) {
      const seq = Number(row.seq);
      if (seq !== expectedSeq) return fail(expectedSeq, `event ${expectedSeq} is missing (next is ${seq})`);
      if (!timingSafeEqual(row.prev_hash, prevHash)) {
        return fail(seq, `event ${seq} does not link to event ${seq - 1}`);
      }
      const hash = chainHash(prevHash, seq, {
        tenantId,
        at: Number(row.at),
        actor: row.actor,
        action: row.action,
        target: row.target,
        result: row.result,
        requestId: row.request_id,
        sourceIp: row.source_ip,
      });
      if (row.hash.length !== hash.length || !timingSafeEqual(row.hash, hash)) {
        return fail(seq, `event ${seq} was modified (its hash does not match its contents)`);
      }
      prevHash = hash;
      expectedSeq = seq + 1;
    }
    if (rows.length < PAGE) break;
  }
  const head = await db
    .selectFrom('tenant_heads')
    .select(['audit_seq', 'audit_hash'])
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  const headSeq = head ? Number(head.audit_seq) : 0;
  if (headSeq !== expectedSeq - 1) {
    return fail(expectedSeq, `the chain ends at event ${expectedSeq - 1} but its head says ${headSeq}: events were removed`);
  }
  if (head && !head.audit_hash.equals(prevHash)) {
    return fail(headSeq, `event ${headSeq} does not match the chain head`);
  }
  return { ok: true, tenantId, events: expectedSeq - 1 };
}
