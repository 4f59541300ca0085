import type { FastifyInstance, RouteOptions } from 'fastify';
import type { Core, Principal } from '../../core/context.js';
import { TENANT_ID } from '../../core/ids.js';
import { auditAuthFailure } from '../../core/audit-events.js';
import { tenantStatus } from '../../core/tenants.js';
import { MfaRequiredError, UnauthenticatedError } from '../../errors.js';
import { ALLOWED_WHEN_PURGED, assertAllowedForStatus, POLICY, type Action } from '../../policy/authorize.js';
import { authenticate, claimedCredential, type Authenticator } from '../../identity/authenticate.js';
import { metaOf } from '../request-context.js';
import { accessRequestRoutes } from './access-requests.js';
import { apiKeyRoutes } from './api-keys.js';
import { auditRoutes } from './audit.js';
import { collectionRoutes } from './collections.js';
import { exportRoutes, signedExportRoutes } from './exports.js';
import { fileRoutes, signedFileRoutes, storageRoutes } from './files.js';
import { notificationRoutes } from './notifications.js';
import { memberRoutes } from './members.js';
import { recordRoutes } from './records.js';
import { certificateKeyRoutes, lifecycleRoutes } from './lifecycle.js';
import { recoveryRoutes } from './recovery.js';
import { tenantRoutes } from './tenants.js';

export interface RouteAction {
  method: string;
  url: string;
  action: Action;
}

/**
 * An onRoute hook: a route that names no authorization action fails start-up; the others are
 * listed in `routeTable`, for the authorization-matrix test and for reviewers.
 */
export function requireAction(routeTable: RouteAction[]) {
  return (route: RouteOptions): void => {
    const action = route.config?.action;
    if (action === undefined || !Object.hasOwn(POLICY, action)) throw new Error(`${String(route.method)} ${route.url} names no authorization action`);
    for (const method of [route.method].flat()) if (method !== 'HEAD') routeTable.push({ method, url: route.url, action });
  };
}

/**
 * A terminated tenant is read-only, and one being purged or purged allows nothing but its metadata
 * and certificate: actions its status no longer allows are refused before they run. Only for
 * callers that may address the tenant at all, so others still cannot tell it from a missing one.
 */
async function refuseWhenTerminated(core: Core, principal: Principal, tenantId: string | undefined, action: Action): Promise<void> {
  if (tenantId === undefined || ALLOWED_WHEN_PURGED.has(action)) return;
  if (principal.kind !== 'operator' && principal.tenantId !== tenantId) return;
  const status = (principal.kind !== 'operator' ? principal.tenantStatus : undefined) ?? (await tenantStatus(core, tenantId));
  if (status !== null) assertAllowedForStatus(action, status);
}

/**
 * Every API route needs a credential, checked before the body is read, and names the action it
 * performs. Authorization itself happens in core, per action.
 */
export async function registerRoutes(app: FastifyInstance, opts: { core: Core; authenticator: Authenticator; routeTable: RouteAction[] }): Promise<void> {
  const { core, authenticator, routeTable } = opts;
  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true }));
  // Outside the authenticated scope: the signed token in the path is the credential.
  await app.register(signedFileRoutes, { core });
  await app.register(signedExportRoutes, { core });
  await app.register(certificateKeyRoutes, { core });
  await app.register(async (api) => {
    api.addHook('onRoute', requireAction(routeTable));
    api.addHook('onRequest', async (request) => {
      const { tenantId } = request.params as { tenantId?: string };
      const tenant = tenantId !== undefined && TENANT_ID.test(tenantId) ? tenantId : undefined;
      const claimed = claimedCredential(request.headers.authorization);
      // Per source, and per credential claimed (guessing against one key or person from many places).
      const limitKeys = [`source:${request.ip}`, ...(claimed.includes(':') ? [`credential:${claimed}`] : [])];
      authenticator.failures.check(limitKeys);
      try {
        request.principal = await authenticate(core, authenticator, request.headers.authorization, tenant, metaOf(request));
        await refuseWhenTerminated(core, request.principal, tenant, request.routeOptions.config.action as Action);
      } catch (error) {
        if (error instanceof UnauthenticatedError) {
          authenticator.failures.recordFailure(limitKeys);
          const reason = (error as { reason?: unknown }).reason;
          if (tenant) await auditAuthFailure(core, tenant, metaOf(request), claimed, typeof reason === 'string' ? reason : 'invalid');
        } else if (error instanceof MfaRequiredError && tenant) {
          await auditAuthFailure(core, tenant, metaOf(request), claimed, 'mfa_required');
        }
        throw error;
      }
    });
    for (const routes of [tenantRoutes, apiKeyRoutes, memberRoutes, collectionRoutes, recordRoutes, fileRoutes, storageRoutes, notificationRoutes, auditRoutes, accessRequestRoutes, recoveryRoutes, exportRoutes, lifecycleRoutes]) {
      await api.register(routes, { core });
    }
  });
}
