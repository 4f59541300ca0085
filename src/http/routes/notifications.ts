import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Core } from '../../core/context.js';
import { NOTIFICATION_EVENTS } from '../../core/notifications/outbox.js';
import { createWebhook, deleteWebhook, listWebhooks, OPERATORS, testWebhook } from '../../core/notifications/webhooks.js';
import { listDeliveries, retryDelivery } from '../../ops/notify/deliveries.js';
import { metaOf, principalOf } from '../request-context.js';
import { Strict, TenantParams, withErrors } from '../schemas.js';

const Webhook = Type.Object({ webhookId: Type.String(), url: Type.String(), events: Type.Array(Type.String()), createdAt: Type.String({ format: 'date-time' }) });
const NewWebhook = Type.Intersect([Webhook, Type.Object({ secret: Type.String({ description: 'whsec_…: shown once; verify webhook-signature with it' }) })]);
const WebhookBody = Strict({
  url: Type.String({ maxLength: 2048, description: 'https only' }),
  events: Type.Array(Type.Union(NOTIFICATION_EVENTS.map((e) => Type.Literal(e))), { minItems: 1 }),
});
const WebhookId = Type.String({ pattern: '^wh_[a-z2-7]{16}$' });
const TenantWebhookParams = Strict({ tenantId: TenantParams.properties.tenantId, webhookId: WebhookId });
const OpsWebhookParams = Strict({ webhookId: WebhookId });
const Delivery = Type.Object({
  deliveryId: Type.String(),
  notificationId: Type.String(),
  tenantId: Type.Union([Type.String(), Type.Null()]),
  event: Type.String(),
  channel: Type.String(),
  target: Type.String(),
  status: Type.String(),
  attempts: Type.Integer(),
  lastError: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  log: Type.Array(Type.Object({ attempt: Type.Integer(), at: Type.String(), ok: Type.Boolean(), detail: Type.String() })),
});

/** The webhooks routes of one owner: a tenant (`/v1/tenants/{t}/webhooks`) or the operators (`/v1/ops/webhooks`). */
function webhookRoutes(app: FastifyInstance, core: Core, base: string, ownerOf: (request: FastifyRequest) => string, params: { list: typeof TenantParams | undefined; one: typeof TenantWebhookParams | typeof OpsWebhookParams }) {
  const action = base.startsWith('/v1/ops') ? 'ops.notifications' : 'webhooks.manage';
  const tags = ['notifications'];
  app.post(base, { config: { action }, schema: { summary: 'Register a webhook; its signing secret is shown once', tags, ...(params.list ? { params: params.list } : {}), body: WebhookBody, response: withErrors({ 201: NewWebhook }) } }, async (request, reply) =>
    reply.code(201).send(await createWebhook(core, principalOf(request), metaOf(request), ownerOf(request), request.body as Static<typeof WebhookBody>)),
  );
  app.get(base, { config: { action }, schema: { summary: 'List webhooks', tags, ...(params.list ? { params: params.list } : {}), response: withErrors({ 200: Type.Object({ webhooks: Type.Array(Webhook) }) }) } }, async (request) => ({
    webhooks: await listWebhooks(core, principalOf(request), ownerOf(request)),
  }));
  app.delete(`${base}/:webhookId`, { config: { action }, schema: { summary: 'Delete a webhook', tags, params: params.one } }, async (request, reply) => {
    await deleteWebhook(core, principalOf(request), metaOf(request), ownerOf(request), (request.params as { webhookId: string }).webhookId);
    return reply.code(204).send();
  });
  app.post(
    `${base}/:webhookId/test`,
    { config: { action }, schema: { summary: 'Send a webhook.test event to this webhook', tags, params: params.one, response: withErrors({ 202: Type.Object({ notificationId: Type.String() }) }) } },
    async (request, reply) => reply.code(202).send(await testWebhook(core, principalOf(request), metaOf(request), ownerOf(request), (request.params as { webhookId: string }).webhookId)),
  );
}

export async function notificationRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  webhookRoutes(app, core, '/v1/tenants/:tenantId/webhooks', (request) => (request.params as { tenantId: string }).tenantId, { list: TenantParams, one: TenantWebhookParams });
  webhookRoutes(app, core, '/v1/ops/webhooks', () => OPERATORS, { list: undefined, one: OpsWebhookParams });
  app.get(
    '/v1/ops/deliveries',
    {
      config: { action: 'ops.notifications' },
      schema: {
        summary: 'Notification deliveries in a state (dead letters by default), with their attempt logs',
        tags: ['notifications'],
        querystring: Strict({ status: Type.Optional(Type.Union([Type.Literal('dead'), Type.Literal('pending'), Type.Literal('delivered')])) }),
        response: withErrors({ 200: Type.Object({ deliveries: Type.Array(Delivery) }) }),
      },
    },
    async (request) => ({ deliveries: await listDeliveries(core, principalOf(request), (request.query as { status?: string }).status) }),
  );
  app.post(
    '/v1/ops/deliveries/:deliveryId/retry',
    { config: { action: 'ops.notifications' }, schema: { summary: 'Retry a dead letter now', tags: ['notifications'], params: Strict({ deliveryId: Type.String({ pattern: '^d_[a-z2-7]{16}$' }) }) } },
    async (request, reply) => {
      await retryDelivery(core, principalOf(request), metaOf(request), (request.params as { deliveryId: string }).deliveryId);
      return reply.code(202).send();
    },
  );
}
