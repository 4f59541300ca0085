import type { FastifyInstance } from 'fastify';
import type { Core } from '../../core/context.js';
import { authenticate } from '../../identity/authenticate.js';
import { apiKeyRoutes } from './api-keys.js';
import { auditRoutes } from './audit.js';
import { collectionRoutes } from './collections.js';
import { memberRoutes } from './members.js';
import { recordRoutes } from './records.js';
import { tenantRoutes } from './tenants.js';

/** Every route under /v1/tenants needs a credential, checked before the body is read; authorization happens in core, per action. */
export async function registerRoutes(app: FastifyInstance, opts: { core: Core }): Promise<void> {
  const { core } = opts;
  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true }));
  await app.register(async (tenantScope) => {
    tenantScope.addHook('onRequest', async (request) => {
      request.principal = await authenticate(core, request.headers.authorization);
    });
    for (const routes of [tenantRoutes, apiKeyRoutes, memberRoutes, collectionRoutes, recordRoutes, auditRoutes]) {
      await tenantScope.register(routes, { core });
    }
  });
}
