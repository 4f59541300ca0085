import { BadRequestError } from '../errors.js';
import { authorize } from '../policy/authorize.js';
import type { Core, Principal, RequestMeta } from './context.js';
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

/** Creates a tenant with its own KMS key, data keys and an owner API key. Operators only. */
export async function createTenant(
  core: Core,
  principal: Extract<Principal, { kind: 'operator' }>,
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
        .values({ id: tenantId, name, status: 'active', kek_name: kekName(tenantId), created_at: now })
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

export async function getTenant(core: Core, principal: Principal, meta: RequestMeta, tenantId: string) {
  authorize(principal, 'tenant.read', { tenantId });
  const row = await core.db.reader
    .selectFrom('tenants')
    .select(['id', 'name', 'status', 'created_at'])
    .where('id', '=', tenantId)
    .executeTakeFirstOrThrow();
  await auditRead(core, principal, meta, { tenantId, action: 'tenant.read', target: plainTarget(`tenant:${tenantId}`), result: 'ok' });
  return { tenantId: row.id, name: row.name, status: row.status, createdAt: new Date(Number(row.created_at)).toISOString() };
}
