import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Core } from '../../core/context.js';
import { getTenant } from '../../core/tenants.js';
import { metaOf, principalOf } from '../request-context.js';
import { TenantParams, withErrors } from '../schemas.js';

const Tenant = Type.Object({ tenantId: Type.String(), name: Type.String(), status: Type.String(), createdAt: Type.String({ format: 'date-time' }) });

export async function tenantRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.get(
    '/v1/tenants/:tenantId',
    { schema: { summary: 'Read the tenant', tags: ['tenants'], params: TenantParams, response: withErrors({ 200: Tenant }) } },
    async (request) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      return getTenant(core, principalOf(request), metaOf(request), tenantId);
    },
  );
}
