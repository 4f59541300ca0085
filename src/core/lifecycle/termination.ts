import { BadRequestError, ConflictError, NotFoundError, PreconditionFailedError } from '../../errors.js';
import { authorize } from '../../policy/authorize.js';
import { actorName, type Core, type Principal, type RequestMeta } from '../context.js';
import { auditInTx, plainTarget } from '../audit-events.js';
import { enqueueNotification } from '../notifications/outbox.js';
import { readTenant, type TenantView } from '../tenants.js';

/** The operator of the machine, through the CLI on the data directory: like a staff operator, gives a reason. */
export type MachineOperator = { kind: 'system'; name: 'cli' };

export interface TerminationRequest {
  /** A member terminating their own tenant confirms by repeating its id. */
  confirm?: string;
  /** An operator says why. */
  reason?: string;
}

/**
 * Terminates a tenant: it becomes read-only (reads and export still work), its purge is due
 * `lifecycle.purgeAfterDays` later by the database's clock, its owners are notified, and the
 * step is audited in its log. An owner must confirm by repeating the tenant id; an operator (or the
 * machine's, through the CLI) must give a reason, which is audited.
 */
export async function terminateTenant(core: Core, principal: Principal | MachineOperator, meta: RequestMeta, tenantId: string, request: TerminationRequest): Promise<TenantView> {
  if (principal.kind !== 'system') authorize(principal, 'tenant.terminate', { tenantId });
  const byOperator = principal.kind === 'operator' || principal.kind === 'system';
  if (byOperator) {
    if (!request.reason?.trim()) throw new BadRequestError('an operator terminating a tenant gives a reason');
  } else if (request.confirm !== tenantId) {
    throw new BadRequestError('confirm the termination by sending the tenant id as "confirm"');
  }
  const now = await core.databaseNow();
  const purgeAfter = now + core.lifecycle.purgeAfterMs;
  return core.committer.submit(tenantId, async (tx, batch) => {
    const tenant = await tx.selectFrom('tenants').select('status').where('id', '=', tenantId).executeTakeFirst();
    if (!tenant) throw new NotFoundError('tenant not found');
    if (tenant.status !== 'active') throw new ConflictError(`the tenant is already ${tenant.status}`);
    const by = principal.kind === 'system' ? `system:${principal.name}` : actorName(principal);
    await tx.updateTable('tenants').set({ status: 'terminated', terminated_at: now, purge_after: purgeAfter, terminated_by: by }).where('id', '=', tenantId).execute();
    const reason = byOperator ? `; reason: ${request.reason!.trim().slice(0, 500)}` : '';
    await auditInTx(tx, batch, core, principal, meta, {
      tenantId,
      action: 'tenant.terminate',
      target: plainTarget(`tenant:${tenantId} purge after ${new Date(purgeAfter).toISOString()}${reason}`),
      result: 'ok',
    });
    await enqueueNotification(tx, now, { tenantId, event: 'tenant.terminated', payload: { occurredAt: now, purgeAt: purgeAfter, actorId: by } });
    return readTenant(tx, tenantId);
  });
}

/** Cancels a termination before the purge is due: the tenant is active again, as it was. */
export async function cancelTermination(core: Core, principal: Principal | MachineOperator, meta: RequestMeta, tenantId: string): Promise<TenantView> {
  if (principal.kind !== 'system') authorize(principal, 'tenant.terminate', { tenantId });
  const now = await core.databaseNow();
  return core.committer.submit(tenantId, async (tx, batch) => {
    const tenant = await tx.selectFrom('tenants').select(['status', 'purge_after']).where('id', '=', tenantId).executeTakeFirst();
    if (!tenant) throw new NotFoundError('tenant not found');
    if (tenant.status !== 'terminated') throw new ConflictError(`the tenant is ${tenant.status}, not terminated`);
    if (now >= Number(tenant.purge_after)) throw new PreconditionFailedError('the purge date has passed: the termination can no longer be cancelled');
    await tx.updateTable('tenants').set({ status: 'active', terminated_at: null, purge_after: null, terminated_by: null, purge_reminded_at: null }).where('id', '=', tenantId).execute();
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: 'tenant.termination_cancel', target: plainTarget(`tenant:${tenantId}`), result: 'ok' });
    return readTenant(tx, tenantId);
  });
}
