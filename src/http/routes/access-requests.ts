import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import {
  approveAccessRequest,
  breakGlass,
  denyAccessRequest,
  listAccessRequests,
  MAX_GRANT_MINUTES,
  requestAccess,
  revokeAccessRequest,
} from '../../core/access-requests.js';
import type { Core } from '../../core/context.js';
import type { Action } from '../../policy/authorize.js';
import { metaOf, principalOf } from '../request-context.js';
import { ErrorResponse, Strict, TenantParams, withErrors } from '../schemas.js';

const Scope = Type.Union([Type.Literal('read'), Type.Literal('read-write')]);
const AccessRequest = Type.Object({
  requestId: Type.String(),
  operatorId: Type.String({ description: 'pseudonymous id of the operator; the deployment knows who it is' }),
  operatorRoles: Type.Array(Type.String()),
  reason: Type.String(),
  ticket: Type.String(),
  scope: Scope,
  durationMinutes: Type.Integer(),
  breakGlass: Type.Boolean(),
  status: Type.String({ description: 'pending, approved, denied, revoked or expired' }),
  requestedAt: Type.String({ format: 'date-time' }),
  decidedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  decidedBy: Type.Union([Type.String(), Type.Null()]),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  endedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
const RequestBody = Strict({
  reason: Type.String({ minLength: 1, maxLength: 1000 }),
  ticket: Type.String({ minLength: 1, maxLength: 100, description: 'the support or incident ticket this access is for' }),
  scope: Scope,
  durationMinutes: Type.Integer({ minimum: 1, maximum: MAX_GRANT_MINUTES }),
  breakGlass: Type.Optional(Type.Boolean({ description: 'an emergency: a second operator with the security role may approve' })),
});
const RequestParams = Strict({ tenantId: TenantParams.properties.tenantId, requestId: Type.String({ pattern: '^ar_[a-z2-7]{16}$' }) });

type Decide = typeof approveAccessRequest;
const DECISIONS: [string, Action, Decide, string][] = [
  ['approve', 'access.decide', approveAccessRequest, "Approve: the grant starts now (the tenant's owners and admins)"],
  ['deny', 'access.decide', denyAccessRequest, 'Deny a pending request'],
  ['break-glass', 'access.breakglass', breakGlass, 'Emergency approval by a second operator with the security role; the tenant is notified'],
  ['revoke', 'access.revoke', revokeAccessRequest, 'End a pending request or a live grant'],
];

/** Operators ask for time-boxed access to a tenant's data; the tenant decides and sees every step. */
export async function accessRequestRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.post(
    '/v1/tenants/:tenantId/access-requests',
    {
      config: { action: 'access.request' },
      schema: { summary: "Ask for access to the tenant's data (operators)", tags: ['access'], params: TenantParams, body: RequestBody, response: withErrors({ 201: AccessRequest, 409: ErrorResponse }) },
    },
    async (request, reply) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      const body = request.body as Static<typeof RequestBody>;
      const created = await requestAccess(core, principalOf(request), metaOf(request), tenantId, { ...body, breakGlass: body.breakGlass ?? false });
      return reply.code(201).send(created);
    },
  );
  app.get(
    '/v1/tenants/:tenantId/access-requests',
    {
      config: { action: 'access.read' },
      schema: { summary: "Operators' requests for access, newest first", tags: ['access'], params: TenantParams, response: withErrors({ 200: Type.Object({ accessRequests: Type.Array(AccessRequest) }) }) },
    },
    async (request) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      return { accessRequests: await listAccessRequests(core, principalOf(request), metaOf(request), tenantId) };
    },
  );
  for (const [verb, action, decide, summary] of DECISIONS) {
    app.post(
      `/v1/tenants/:tenantId/access-requests/:requestId/${verb}`,
      { config: { action }, schema: { summary, tags: ['access'], params: RequestParams, response: withErrors({ 200: AccessRequest, 409: ErrorResponse }) } },
      async (request) => {
        const { tenantId, requestId } = request.params as Static<typeof RequestParams>;
        return decide(core, principalOf(request), metaOf(request), tenantId, requestId);
      },
    );
  }
}
