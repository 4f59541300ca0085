import type { FastifyInstance } from 'fastify';
import type { Core } from '../../core/context.js';
import { TENANT_ID } from '../../core/ids.js';
import { auditAuthFailure } from '../../core/audit-events.js';
import { UnauthenticatedError } from '../../errors.js';
import { authenticate, claimedCredential, type Authenticator } from '../../identity/authenticate.js';
import { metaOf } from '../request-context.js';
import { apiKeyRoutes } from './api-keys.js';
import { auditRoutes } from './audit.js';
import { collectionRoutes } from './collections.js';
import { memberRoutes } from './members.js';
import { recordRoutes } from './records.js';
import { tenantRoutes } from './tenants.js';

/** Every route under /v1/tenants needs a credential, checked before the body is read; authorization happens in core, per action. */
export async function registerRoutes(app: FastifyInstance, opts: { core: Core; authenticator: Authenticator }): Promise<void> {
  const { core, authenticator } = opts;
  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true }));
  await app.register(async (tenantScope) => {
    tenantScope.addHook('onRequest', async (request) => {
      const { tenantId } = request.params as { tenantId?: string };
      const tenant = tenantId !== undefined && TENANT_ID.test(tenantId) ? tenantId : undefined;
      const claimed = claimedCredential(request.headers.authorization);
      // Per source, and per credential claimed (guessing against one key or person from many places).
      const limitKeys = [`source:${request.ip}`, ...(claimed.includes(':') ? [`credential:${claimed}`] : [])];
      authenticator.failures.check(limitKeys);
      try {
        request.principal = await authenticate(core, authenticator, request.headers.authorization, tenant, metaOf(request));
      } catch (error) {
        if (error instanceof UnauthenticatedError) {
          authenticator.failures.recordFailure(limitKeys);
          const reason = (error as { reason?: unknown }).reason;
          if (tenant) await auditAuthFailure(core, tenant, metaOf(request), claimed, typeof reason === 'string' ? reason : 'invalid');
        }
        throw error;
      }
    });
    for (const routes of [tenantRoutes, apiKeyRoutes, memberRoutes, collectionRoutes, recordRoutes, auditRoutes]) {
      await tenantScope.register(routes, { core });
    }
  });
}
