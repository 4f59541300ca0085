import { encodeAad, openRecord, recordKeyId, sealRecord } from '../crypto/record-cipher.js';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError } from '../errors.js';
import { authorize } from '../policy/authorize.js';
import type { BatchState, Tx } from '../store/db/group-commit.js';
import type { AccessRequestsTable } from '../store/db/tables.js';
import { actorName, type ActiveGrant, type Actor, type Core, type GrantScope, type OperatorRole, type Principal, type RequestMeta } from './context.js';
import { auditInTx, auditRead, plainTarget } from './audit-events.js';
import { checkFormat, randomId } from './ids.js';
import { enqueueNotification } from './notifications/outbox.js';
import { tenantDataKey, tenantDataKeyById } from './tenant-keys.js';

/**
 * Operators see no tenant data by default. To read it they ask the tenant: the tenant's admins
 * approve or deny; in an emergency a second operator with the `security` role may approve instead
 * (break-glass) and the tenant is told at once. A grant lasts at most four hours, ends by itself and
 * can be revoked. Every step, and every use, is an event in the tenant's own audit log.
 */
export const MAX_GRANT_MINUTES = 240;
export const ACCESS_REQUEST_ID = /^ar_[a-z2-7]{16}$/;
const TICKET = /^[A-Za-z0-9._:#/-]{1,100}$/;
const SYSTEM: Actor = { kind: 'system', name: 'access-grants' };

export type AccessStatus = 'pending' | 'approved' | 'denied' | 'revoked' | 'expired';

export interface AccessRequestView {
  requestId: string;
  operatorId: string;
  operatorRoles: OperatorRole[];
  reason: string;
  ticket: string;
  scope: GrantScope;
  durationMinutes: number;
  breakGlass: boolean;
  status: AccessStatus;
  requestedAt: string;
  decidedAt: string | null;
  decidedBy: string | null;
  expiresAt: string | null;
  endedAt: string | null;
}

export interface NewAccessRequest {
  reason: string;
  ticket: string;
  scope: GrantScope;
  durationMinutes: number;
  breakGlass: boolean;
}

type Operator = Extract<Principal, { kind: 'operator' }>;

export const detailsAad = (tenantId: string, requestId: string) => encodeAad(['strongroom/access-request', tenantId, requestId]);
const iso = (ms: number | null) => (ms === null ? null : new Date(Number(ms)).toISOString());
const target = (requestId: string, extra = '') => plainTarget(`access-request:${requestId}${extra}`);

function asOperator(principal: Principal): Operator {
  if (principal.kind !== 'operator') throw new ForbiddenError('only operators ask for access');
  return principal;
}

async function requireTenant(core: Core, tenantId: string): Promise<void> {
  const tenant = await core.db.reader.selectFrom('tenants').select('id').where('id', '=', tenantId).executeTakeFirst();
  if (!tenant) throw new NotFoundError('tenant not found');
}

export async function requestAccess(core: Core, principal: Principal, meta: RequestMeta, tenantId: string, request: NewAccessRequest): Promise<AccessRequestView> {
  authorize(principal, 'access.request', { tenantId });
  const operator = asOperator(principal);
  if (request.reason.trim() === '' || request.reason.length > 1000) throw new BadRequestError('a reason is 1-1000 characters');
  checkFormat(request.ticket, TICKET, 'ticket reference');
  if (!Number.isInteger(request.durationMinutes) || request.durationMinutes < 1 || request.durationMinutes > MAX_GRANT_MINUTES) {
    throw new BadRequestError(`a grant lasts 1-${MAX_GRANT_MINUTES} minutes`);
  }
  await requireTenant(core, tenantId);
  const requestId = `ar_${randomId(10)}`;
  const details = JSON.stringify({ reason: request.reason, ticket: request.ticket });
  const detailsEnc = sealRecord(await tenantDataKey(core, tenantId, principal), detailsAad(tenantId, requestId), Buffer.from(details, 'utf8'));
  return core.committer.submit(tenantId, async (tx, batch) => {
    const now = core.now();
    const open = await tx
      .selectFrom('access_requests')
      .select('request_id')
      .where('tenant_id', '=', tenantId)
      .where('operator_id', '=', operator.operatorId)
      .where('status', 'in', ['pending', 'approved'])
      .executeTakeFirst();
    if (open) throw new ConflictError(`this operator already has an open request for this tenant: ${open.request_id}`);
    const row: AccessRequestsTable = {
      tenant_id: tenantId,
      request_id: requestId,
      operator_id: operator.operatorId,
      operator_roles: operator.roles.join(','),
      scope: request.scope,
      duration_seconds: request.durationMinutes * 60,
      break_glass: request.breakGlass ? 1 : 0,
      details_enc: detailsEnc,
      status: 'pending',
      requested_at: now,
      decided_at: null,
      decided_by: null,
      expires_at: null,
      ended_at: null,
    };
    await tx.insertInto('access_requests').values(row).execute();
    const summary = ` scope:${request.scope} minutes:${request.durationMinutes}${request.breakGlass ? ' break-glass' : ''}`;
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: 'access.request', target: target(requestId, summary), result: 'ok' });
    const payload = { tenantId, requestId, operatorId: operator.operatorId, scope: request.scope, durationMinutes: request.durationMinutes, breakGlass: request.breakGlass, occurredAt: iso(now)! };
    await enqueueNotification(tx, now, { tenantId, event: 'access.requested', payload });
    return view(row, request.reason, request.ticket);
  });
}

function view(row: AccessRequestsTable, reason: string, ticket: string): AccessRequestView {
  return {
    requestId: row.request_id,
    operatorId: row.operator_id,
    operatorRoles: row.operator_roles.split(',') as OperatorRole[],
    reason,
    ticket,
    scope: row.scope as GrantScope,
    durationMinutes: row.duration_seconds / 60,
    breakGlass: row.break_glass === 1,
    status: row.status as AccessStatus,
    requestedAt: iso(row.requested_at)!,
    decidedAt: iso(row.decided_at),
    decidedBy: row.decided_by,
    expiresAt: iso(row.expires_at),
    endedAt: iso(row.ended_at),
  };
}

async function openView(core: Core, caller: Actor, row: AccessRequestsTable): Promise<AccessRequestView> {
  const key = await tenantDataKeyById(core, row.tenant_id, recordKeyId(row.details_enc), caller);
  const { reason, ticket } = JSON.parse(openRecord(key, detailsAad(row.tenant_id, row.request_id), row.details_enc).toString('utf8')) as { reason: string; ticket: string };
  return view(row, reason, ticket);
}

export async function listAccessRequests(core: Core, principal: Principal, meta: RequestMeta, tenantId: string): Promise<AccessRequestView[]> {
  authorize(principal, 'access.read', { tenantId });
  await expireGrants(core, tenantId);
  const rows = await core.db.reader.selectFrom('access_requests').selectAll().where('tenant_id', '=', tenantId).orderBy('requested_at', 'desc').execute();
  const views = await Promise.all(rows.map((row) => openView(core, principal, row)));
  await auditRead(core, principal, meta, { tenantId, action: 'access.list', target: plainTarget('access-requests'), result: 'ok' });
  return views;
}

/** Moves one request on, in one transaction with its audit event; `decide` throws to refuse. */
async function transition(
  core: Core,
  principal: Principal,
  tenantId: string,
  requestId: string,
  decide: (row: AccessRequestsTable, tx: Tx, batch: BatchState, now: number) => Promise<Partial<AccessRequestsTable>>,
): Promise<AccessRequestView> {
  checkFormat(requestId, ACCESS_REQUEST_ID, 'access request id');
  const updated = await core.committer.submit(tenantId, async (tx, batch) => {
    const row = await tx.selectFrom('access_requests').selectAll().where('tenant_id', '=', tenantId).where('request_id', '=', requestId).executeTakeFirst();
    if (!row) throw new NotFoundError('access request not found');
    const change = await decide(row, tx, batch, core.now());
    await tx.updateTable('access_requests').set(change).where('tenant_id', '=', tenantId).where('request_id', '=', requestId).execute();
    return { ...row, ...change };
  });
  // Outside the transaction: opening the details may need the KMS, whose use is itself audited.
  return openView(core, principal, updated);
}

const requirePending = (row: AccessRequestsTable) => {
  if (row.status !== 'pending') throw new ConflictError(`the request is ${row.status}, not pending`);
};

/** Starts the grant now for its requested duration, audited and notified in the same transaction. */
async function grant(
  core: Core,
  principal: Principal,
  meta: RequestMeta,
  tenantId: string,
  requestId: string,
  how: { action: 'access.approve' | 'access.breakglass'; event: 'access.approved' | 'access.breakglass'; check?: (row: AccessRequestsTable) => void },
): Promise<AccessRequestView> {
  return transition(core, principal, tenantId, requestId, async (row, tx, batch, now) => {
    requirePending(row);
    how.check?.(row);
    const expiresAt = now + row.duration_seconds * 1000;
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: how.action, target: target(requestId, ` until:${iso(expiresAt)}`), result: 'ok' });
    // Pseudonymous ids only: who asked, who approved, for how long.
    const payload = { tenantId, requestId, operatorId: row.operator_id, actorId: actorName(principal), scope: row.scope, occurredAt: iso(now)!, expiresAt: iso(expiresAt)! };
    await enqueueNotification(tx, now, { tenantId, event: how.event, payload });
    return { status: 'approved', decided_at: now, decided_by: actorName(principal), expires_at: expiresAt };
  });
}

/** The tenant's admins approve. */
export async function approveAccessRequest(core: Core, principal: Principal, meta: RequestMeta, tenantId: string, requestId: string): Promise<AccessRequestView> {
  authorize(principal, 'access.decide', { tenantId });
  return grant(core, principal, meta, tenantId, requestId, { action: 'access.approve', event: 'access.approved' });
}

/** Emergency approval by a second operator with the `security` role; the tenant is notified at once. */
export async function breakGlass(core: Core, principal: Principal, meta: RequestMeta, tenantId: string, requestId: string): Promise<AccessRequestView> {
  authorize(principal, 'access.breakglass', { tenantId });
  const approver = asOperator(principal);
  return grant(core, principal, meta, tenantId, requestId, {
    action: 'access.breakglass',
    event: 'access.breakglass',
    check(row) {
      if (row.break_glass !== 1) throw new ConflictError('only a request marked break-glass can be approved by an operator');
      if (row.operator_id === approver.operatorId) throw new ForbiddenError('a second operator must approve a break-glass request');
    },
  });
}

export async function denyAccessRequest(core: Core, principal: Principal, meta: RequestMeta, tenantId: string, requestId: string): Promise<AccessRequestView> {
  authorize(principal, 'access.decide', { tenantId });
  return transition(core, principal, tenantId, requestId, async (row, tx, batch, now) => {
    requirePending(row);
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: 'access.deny', target: target(requestId), result: 'ok' });
    return { status: 'denied', decided_at: now, decided_by: actorName(principal) };
  });
}

/** Ends a pending request or a live grant: the tenant's admins, a security operator, or the requester itself. */
export async function revokeAccessRequest(core: Core, principal: Principal, meta: RequestMeta, tenantId: string, requestId: string): Promise<AccessRequestView> {
  authorize(principal, 'access.revoke', { tenantId });
  return transition(core, principal, tenantId, requestId, async (row, tx, batch, now) => {
    if (principal.kind === 'operator' && !principal.roles.includes('security') && row.operator_id !== principal.operatorId) {
      throw new ForbiddenError('operators revoke only their own requests, unless they have the security role');
    }
    const live = row.status === 'pending' || (row.status === 'approved' && Number(row.expires_at) > now);
    if (!live) throw new ConflictError(`the request is ${row.status === 'approved' ? 'expired' : row.status}`);
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: 'access.revoke', target: target(requestId), result: 'ok' });
    return { status: 'revoked', ended_at: now };
  });
}

/**
 * The operator's live grant in this tenant, if any. A grant found past its end is expired first,
 * so the expiry is in the tenant's audit log before the access it ends is refused.
 */
export async function activeGrant(core: Core, tenantId: string, operatorId: string): Promise<ActiveGrant | null> {
  const row = await core.db.reader
    .selectFrom('access_requests')
    .select(['request_id', 'scope', 'expires_at'])
    .where('tenant_id', '=', tenantId)
    .where('operator_id', '=', operatorId)
    .where('status', '=', 'approved')
    .executeTakeFirst();
  if (!row) return null;
  if (Number(row.expires_at) <= core.now()) {
    await expireGrants(core, tenantId);
    return null;
  }
  return { tenantId, requestId: row.request_id, scope: row.scope as GrantScope, expiresAt: Number(row.expires_at) };
}

/**
 * Marks grants past their end as expired, each with an `access.expire` event in its tenant's log.
 * Idempotent and safe on several instances: a grant is expired by whichever transaction gets it.
 */
export async function expireGrants(core: Core, onlyTenant?: string): Promise<number> {
  let query = core.db.reader
    .selectFrom('access_requests')
    .select(['tenant_id', 'request_id', 'expires_at'])
    .where('status', '=', 'approved')
    .where('expires_at', '<=', core.now());
  if (onlyTenant !== undefined) query = query.where('tenant_id', '=', onlyTenant);
  let expired = 0;
  for (const due of await query.execute()) {
    expired += await core.committer.submit(due.tenant_id, async (tx, batch) => {
      const result = await tx
        .updateTable('access_requests')
        .set({ status: 'expired', ended_at: Number(due.expires_at) })
        .where('tenant_id', '=', due.tenant_id)
        .where('request_id', '=', due.request_id)
        .where('status', '=', 'approved')
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) === 0) return 0;
      const meta = { requestId: '-', sourceIp: '-' };
      await auditInTx(tx, batch, core, SYSTEM, meta, { tenantId: due.tenant_id, action: 'access.expire', target: target(due.request_id), result: 'ok' });
      return 1;
    });
  }
  return expired;
}
