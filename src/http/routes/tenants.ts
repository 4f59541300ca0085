import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Core } from '../../core/context.js';
import { cancelTermination, terminateTenant } from '../../core/lifecycle/termination.js';
import { getTenant, listTenants, updateTenantPolicy } from '../../core/tenants.js';
import { metaOf, principalOf } from '../request-context.js';
import { Strict, TenantParams, withErrors } from '../schemas.js';

const Tenant = Type.Object({
  tenantId: Type.String(),
  name: Type.String(),
  status: Type.String(),
  requireMfa: Type.Boolean({ description: 'members must sign in with a second factor' }),
  createdAt: Type.String({ format: 'date-time' }),
  terminatedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  purgeAfter: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'when a terminated tenant is purged; until then the termination can be cancelled' }),
});
const PolicyBody = Strict({ requireMfa: Type.Boolean() });
const TerminationBody = Strict(
  {
    confirm: Type.Optional(Type.String({ maxLength: 64, description: 'an owner repeats the tenant id to confirm' })),
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500, description: 'an operator says why' })),
  },
  'an owner confirms with the tenant id; an operator gives a reason',
);

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
  app.post(
    '/v1/tenants/:tenantId/termination',
    {
      config: { action: 'tenant.terminate' },
      schema: {
        summary: 'Terminate the tenant (an owner, confirming; or an operator, with a reason): read-only at once, purged after the configured days',
        tags: ['lifecycle'],
        params: TenantParams,
        body: TerminationBody,
        response: withErrors({ 200: Tenant }),
      },
    },
    async (request) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      return terminateTenant(core, principalOf(request), metaOf(request), tenantId, request.body as Static<typeof TerminationBody>);
    },
  );
  app.delete(
    '/v1/tenants/:tenantId/termination',
    { config: { action: 'tenant.terminate' }, schema: { summary: 'Cancel the termination before the purge date', tags: ['lifecycle'], params: TenantParams, response: withErrors({ 200: Tenant }) } },
    async (request) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      return cancelTermination(core, principalOf(request), metaOf(request), tenantId);
    },
  );
}
