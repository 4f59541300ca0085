import { BadRequestError, NotFoundError } from '../errors.js';
import { authorize } from '../policy/authorize.js';
import type { TenantsTable } from '../store/db/tables.js';
import type { Actor, Core, Principal, RequestMeta } from './context.js';
import { insertApiKey, type NewApiKey } from './api-keys.js';
import { auditInTx, auditRead, plainTarget } from './audit-events.js';
import { newTenantId } from './ids.js';
import { createTenantKeys, insertTenantKeys, kekName } from './tenant-keys.js';

export const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$/;

export interface NewTenant {
  tenantId: string;
  name: string;
  /** The tenant's first key, with admin scope; shown once. */
  apiKey: string;
  apiKeyId: string;
}

/** Creates a tenant with its own KMS key, data keys and an owner API key. From the CLI, on the server's machine. */
export async function createTenant(
  core: Core,
  principal: Extract<Actor, { kind: 'system' }>,
  meta: RequestMeta,
  name: string,
): Promise<NewTenant> {
  if (!TENANT_NAME.test(name)) {
    throw new BadRequestError('a tenant name is 1-100 letters, digits, spaces, dots, dashes or underscores');
  }
  const tenantId = newTenantId();
  const keys = await createTenantKeys(core.kms, tenantId);
  try {
    const key: NewApiKey = await core.committer.submit(tenantId, async (tx, batch) => {
      const now = core.now();
      await tx
        .insertInto('tenants')
        .values({ id: tenantId, name, status: 'active', kek_name: kekName(tenantId), created_at: now, require_mfa: 0 })
        .execute();
      await insertTenantKeys(tx, tenantId, keys, now);
      await auditInTx(tx, batch, core, principal, meta, {
        tenantId,
        action: 'tenant.create',
        target: plainTarget(`tenant:${tenantId}`),
        result: 'ok',
      });
      return insertApiKey(tx, batch, core, principal, meta, tenantId, ['admin'], null);
    });
    return { tenantId, name, apiKey: key.apiKey, apiKeyId: key.keyId };
  } finally {
    keys.dataKey.key.fill(0);
  }
}

export interface TenantView {
  tenantId: string;
  name: string;
  /** `active`, `terminated` (read-only until the purge) or `purged`. */
  status: string;
  requireMfa: boolean;
  createdAt: string;
  terminatedAt: string | null;
  purgeAfter: string | null;
}

const TENANT_COLUMNS = ['id', 'name', 'status', 'require_mfa', 'created_at', 'terminated_at', 'purge_after'] as const;

export async function readTenant(db: Core['db']['reader'], tenantId: string): Promise<TenantView> {
  const row = await db.selectFrom('tenants').select(TENANT_COLUMNS).where('id', '=', tenantId).executeTakeFirst();
  // Operators are not bound to one tenant, so they can address one that does not exist.
  if (!row) throw new NotFoundError('tenant not found');
  return tenantView(row);
}

const iso = (ms: number | null) => (ms === null ? null : new Date(Number(ms)).toISOString());

const tenantView = (row: Pick<TenantsTable, (typeof TENANT_COLUMNS)[number]>): TenantView => ({
  tenantId: row.id,
  name: row.name,
  status: row.status,
  requireMfa: row.require_mfa === 1,
  createdAt: iso(row.created_at)!,
  terminatedAt: iso(row.terminated_at),
  purgeAfter: iso(row.purge_after),
});

/** Every tenant's metadata, for the deployment's operators. */
export async function listTenants(core: Core, principal: Principal): Promise<TenantView[]> {
  authorize(principal, 'ops.read', { tenantId: null });
  const rows = await core.db.reader.selectFrom('tenants').select(TENANT_COLUMNS).orderBy('created_at').execute();
  return rows.map(tenantView);
}

export async function getTenant(core: Core, principal: Principal, meta: RequestMeta, tenantId: string): Promise<TenantView> {
  authorize(principal, 'tenant.read', { tenantId });
  const tenant = await readTenant(core.db.reader, tenantId);
  await auditRead(core, principal, meta, { tenantId, action: 'tenant.read', target: plainTarget(`tenant:${tenantId}`), result: 'ok' });
  return tenant;
}

/** Changes the tenant's security policy: whether members must sign in with a second factor. */
export async function updateTenantPolicy(
  core: Core,
  principal: Principal,
  meta: RequestMeta,
  tenantId: string,
  policy: { requireMfa: boolean },
): Promise<TenantView> {
  authorize(principal, 'tenant.update', { tenantId });
  return core.committer.submit(tenantId, async (tx, batch) => {
    await tx.updateTable('tenants').set({ require_mfa: policy.requireMfa ? 1 : 0 }).where('id', '=', tenantId).execute();
    await auditInTx(tx, batch, core, principal, meta, {
      tenantId,
      action: 'tenant.policy',
      target: plainTarget(`tenant:${tenantId} requireMfa:${policy.requireMfa}`),
      result: 'ok',
    });
    return readTenant(tx, tenantId);
  });
}

/**
 * Statuses of a tenant whose key is scheduled for destruction or destroyed: nothing more is sealed
 * under it, so backups, drills and key rotation leave such a tenant out.
 */
export const SHREDDED_STATUSES: readonly string[] = ['purging', 'purged'];

/** A tenant's lifecycle status (`active`, `terminated`, `purging`, `purged`), or null when there is no such tenant. */
export async function tenantStatus(core: Core, tenantId: string): Promise<string | null> {
  const row = await core.db.reader.selectFrom('tenants').select('status').where('id', '=', tenantId).executeTakeFirst();
  return row?.status ?? null;
}
