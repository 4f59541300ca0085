import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { createApiKey, listApiKeys, revokeApiKey } from '../../core/api-keys.js';
import type { Core } from '../../core/context.js';
import { metaOf, principalOf } from '../request-context.js';
import { Strict, TenantParams, withErrors } from '../schemas.js';

const Scope = Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('admin')]);
const ApiKey = Type.Object({
  keyId: Type.String(),
  scopes: Type.Array(Scope),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
const NewApiKey = Type.Composite([ApiKey, Type.Object({ apiKey: Type.String({ description: 'shown once' }) })]);
const CreateBody = Strict({
  scopes: Type.Array(Scope, { minItems: 1, maxItems: 3 }),
  expiresAt: Type.Optional(Type.String({ format: 'date-time' })),
});
const KeyParams = Strict({ tenantId: TenantParams.properties.tenantId, keyId: Type.String({ pattern: '^[a-z2-7]{16}$' }) });

export async function apiKeyRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.post(
    '/v1/tenants/:tenantId/api-keys',
    { config: { action: 'api_keys.manage' }, schema: { summary: 'Create an API key (the secret is shown once)', tags: ['api-keys'], params: TenantParams, body: CreateBody, response: withErrors({ 201: NewApiKey }) } },
    async (request, reply) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      const body = request.body as Static<typeof CreateBody>;
      const key = await createApiKey(core, principalOf(request), metaOf(request), tenantId, body);
      return reply.code(201).send(key);
    },
  );
  app.get(
    '/v1/tenants/:tenantId/api-keys',
    { config: { action: 'api_keys.manage' }, schema: { summary: 'List API keys (never their secrets)', tags: ['api-keys'], params: TenantParams, response: withErrors({ 200: Type.Object({ apiKeys: Type.Array(ApiKey) }) }) } },
    async (request) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      return { apiKeys: await listApiKeys(core, principalOf(request), metaOf(request), tenantId) };
    },
  );
  app.delete(
    '/v1/tenants/:tenantId/api-keys/:keyId',
    { config: { action: 'api_keys.manage' }, schema: { summary: 'Revoke an API key', tags: ['api-keys'], params: KeyParams, response: withErrors({ 204: Type.Null() }) } },
    async (request, reply) => {
      const { tenantId, keyId } = request.params as Static<typeof KeyParams>;
      await revokeApiKey(core, principalOf(request), metaOf(request), tenantId, keyId);
      return reply.code(204).send();
    },
  );
}
