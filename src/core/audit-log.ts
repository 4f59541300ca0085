import { BadRequestError } from '../errors.js';
import { authorize } from '../policy/authorize.js';
import type { Core, Principal, RequestMeta } from './context.js';
import { auditRead, plainTarget, readTarget } from './audit-events.js';

export interface AuditEventView {
  seq: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  result: string;
  requestId: string;
  sourceIp: string;
  hash: string;
}

const CURSOR = /^[0-9]{1,15}$/;

/** A tenant's audit events in order, paged by sequence number. Reading the log is itself audited. */
export async function listAuditEvents(
  core: Core,
  principal: Principal,
  meta: RequestMeta,
  tenantId: string,
  page: { cursor?: string | undefined; limit?: number | undefined },
): Promise<{ events: AuditEventView[]; nextCursor: string | null }> {
  authorize(principal, 'audit.read', { tenantId });
  if (page.cursor !== undefined && !CURSOR.test(page.cursor)) throw new BadRequestError('invalid cursor');
  const after = page.cursor === undefined ? 0 : Number(page.cursor);
  const limit = Math.min(page.limit ?? core.limits.defaultPageSize, core.limits.maxPageSize);
  const rows = await core.db.reader
    .selectFrom('audit_events')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('seq', '>', after)
    .orderBy('seq')
    .limit(limit + 1)
    .execute();
  const events: AuditEventView[] = [];
  for (const row of rows.slice(0, limit)) {
    events.push({
      seq: Number(row.seq),
      at: new Date(Number(row.at)).toISOString(),
      actor: row.actor,
      action: row.action,
      target: await readTarget(core, principal, tenantId, row.target),
      result: row.result,
      requestId: row.request_id,
      sourceIp: row.source_ip,
      hash: row.hash.toString('hex'),
    });
  }
  await auditRead(core, principal, meta, { tenantId, action: 'audit.read', target: plainTarget('audit'), result: 'ok' });
  const last = events[events.length - 1];
  return { events, nextCursor: rows.length > limit && last ? String(last.seq) : null };
}
