import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Core } from '../../core/context.js';
import { getTenant, listTenants, updateTenantPolicy } from '../../core/tenants.js';
import { metaOf, principalOf } from '../request-context.js';
import { Strict, TenantParams, withErrors } from '../schemas.js';

const Tenant = Type.Object({
  tenantId: Type.String(),
  name: Type.String(),
  status: Type.String(),
  requireMfa: Type.Boolean({ description: 'members must sign in with a second factor' }),
  createdAt: Type.String({ format: 'date-time' }),
});
const PolicyBody = Strict({ requireMfa: Type.Boolean() });

export async function tenantRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.get(
    '/v1/ops/tenants',
    { config: { action: 'ops.read' }, schema: { summary: "Every tenant's metadata (operators)", tags: ['ops'], response: withErrors({ 200: Type.Object({ tenants: Type.Array(Tenant) }) }) } },
    async (request) => ({ tenants: await listTenants(core, principalOf(request)) }),
  );
  app.get(
    '/v1/tenants/:tenantId',
    { config: { action: 'tenant.read' }, schema: { summary: 'Read the tenant', tags: ['tenants'], params: TenantParams, response: withErrors({ 200: Tenant }) } },
    async (request) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      return getTenant(core, principalOf(request), metaOf(request), tenantId);
    },
  );
  app.patch(
    '/v1/tenants/:tenantId',
    {
      config: { action: 'tenant.update' },
      schema: {
        summary: "Change the tenant's security policy",
        tags: ['tenants'],
        params: TenantParams,
        body: PolicyBody,
        response: withErrors({ 200: Tenant }),
      },
    },
    async (request) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      return updateTenantPolicy(core, principalOf(request), metaOf(request), tenantId, request.body as Static<typeof PolicyBody>);
    },
  );
}
