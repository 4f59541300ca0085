import { randomBytes } from 'node:crypto';
import { encodeAad } from '../../crypto/record-cipher.js';
import { BadRequestError, ConflictError, NotFoundError } from '../../errors.js';
import { wrappedKeyVersion } from '../../kms/kms.js';
import { authorize, type Action } from '../../policy/authorize.js';
import { SYSTEM_SECRETS_KEY } from '../../secrets/store.js';
import { auditInTx, auditRead, plainTarget, SYSTEM_CHAIN } from '../audit-events.js';
import type { Actor, Core, Principal, RequestMeta } from '../context.js';
import { randomId } from '../ids.js';
import { kekName } from '../tenant-keys.js';
import { enqueueNotification, NOTIFICATION_EVENTS, type NotificationEvent } from './outbox.js';

/** The owner of the operators' webhooks; a tenant's are owned by its id. */
export const OPERATORS = SYSTEM_CHAIN;

export interface WebhookView {
  webhookId: string;
  url: string;
  events: NotificationEvent[];
  createdAt: string;
}

export interface NewWebhook extends WebhookView {
  /** `whsec_` + base64 of 32 random bytes (the Standard Webhooks form); shown once. */
  secret: string;
}

export const WEBHOOK_ID = /^wh_[a-z2-7]{16}$/;

/** Tenants' secrets are wrapped by the tenant's KEK (shredded with it), the operators' by the system KEK. */
const kekOf = (owner: string) => (owner === OPERATORS ? SYSTEM_SECRETS_KEY : kekName(owner));
const secretAad = (owner: string, webhookId: string) => encodeAad(['strongroom/webhook-secret', owner, webhookId]);
const actionOf = (owner: string): Action => (owner === OPERATORS ? 'ops.notifications' : 'webhooks.manage');
const scopeOf = (owner: string) => ({ tenantId: owner === OPERATORS ? null : owner });

/** HTTPS only, no credentials in the URL (they would sit in the database and in every log line a proxy writes). */
function checkUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new BadRequestError('the webhook URL is not a URL');
  }
  if (url.protocol !== 'https:') throw new BadRequestError('webhooks are delivered over HTTPS only');
  if (url.username !== '' || url.password !== '') throw new BadRequestError('a webhook URL may not carry credentials: verify our signature instead');
  if (raw.length > 2048) throw new BadRequestError('a webhook URL is at most 2048 characters');
  return url.toString();
}

function checkEvents(events: string[]): NotificationEvent[] {
  if (events.length === 0) throw new BadRequestError('a webhook needs at least one event type');
  for (const event of events) {
    if (!(NOTIFICATION_EVENTS as readonly string[]).includes(event)) throw new BadRequestError(`unknown event type "${event}"; known: ${NOTIFICATION_EVENTS.join(', ')}`);
  }
  return [...new Set(events)] as NotificationEvent[];
}

const view = (row: { webhook_id: string; url: string; events: string; created_at: number }): WebhookView => ({
  webhookId: row.webhook_id,
  url: row.url,
  events: row.events.split(',') as NotificationEvent[],
  createdAt: new Date(Number(row.created_at)).toISOString(),
});

/** Registers a webhook of a tenant or of the operators; the signing secret is returned once. */
export async function createWebhook(core: Core, principal: Principal, meta: RequestMeta, owner: string, request: { url: string; events: string[] }): Promise<NewWebhook> {
  authorize(principal, actionOf(owner), scopeOf(owner));
  const url = checkUrl(request.url);
  const events = checkEvents(request.events);
  const webhookId = `wh_${randomId(10)}`;
  const secret = randomBytes(32);
  let wrapped: Buffer;
  try {
    // The system KEK exists once a first system secret or operators' webhook needs it.
    if (owner === OPERATORS) await core.kms.createKey(SYSTEM_SECRETS_KEY).catch((error: unknown) => {
      if (!(error instanceof ConflictError)) throw error;
    });
    wrapped = await core.kms.wrapKey(kekOf(owner), secret, secretAad(owner, webhookId));
  } catch (error) {
    secret.fill(0);
    throw error;
  }
  const created = await core.committer.submit(owner, async (tx, batch) => {
    if (owner !== OPERATORS && !(await tx.selectFrom('tenants').select('id').where('id', '=', owner).executeTakeFirst())) throw new NotFoundError('tenant not found');
    const now = core.now();
    await tx.insertInto('webhooks').values({ owner, webhook_id: webhookId, url, events: events.join(','), secret_wrapped: wrapped, created_at: now }).execute();
    await auditInTx(tx, batch, core, principal, meta, { tenantId: owner, action: 'webhook.create', target: plainTarget(`webhook:${webhookId} host:${new URL(url).host} events:${events.join(',')}`), result: 'ok' });
    return view({ webhook_id: webhookId, url, events: events.join(','), created_at: now });
  });
  const shown = `whsec_${secret.toString('base64')}`;
  secret.fill(0);
  return { ...created, secret: shown };
}

export async function listWebhooks(core: Core, principal: Principal, owner: string): Promise<WebhookView[]> {
  authorize(principal, actionOf(owner), scopeOf(owner));
  const rows = await core.db.reader.selectFrom('webhooks').select(['webhook_id', 'url', 'events', 'created_at']).where('owner', '=', owner).orderBy('created_at').execute();
  return rows.map(view);
}

export async function deleteWebhook(core: Core, principal: Principal, meta: RequestMeta, owner: string, webhookId: string): Promise<void> {
  authorize(principal, actionOf(owner), scopeOf(owner));
  await core.committer.submit(owner, async (tx, batch) => {
    const result = await tx.deleteFrom('webhooks').where('owner', '=', owner).where('webhook_id', '=', webhookId).executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) throw new NotFoundError('webhook not found');
    await auditInTx(tx, batch, core, principal, meta, { tenantId: owner, action: 'webhook.delete', target: plainTarget(`webhook:${webhookId}`), result: 'ok' });
  });
}

/** Queues a `webhook.test` notification for this webhook alone, through the same delivery path as real events. */
export async function testWebhook(core: Core, principal: Principal, meta: RequestMeta, owner: string, webhookId: string): Promise<{ notificationId: string }> {
  authorize(principal, actionOf(owner), scopeOf(owner));
  return core.committer.submit(owner, async (tx, batch) => {
    const found = await tx.selectFrom('webhooks').select('webhook_id').where('owner', '=', owner).where('webhook_id', '=', webhookId).executeTakeFirst();
    if (!found) throw new NotFoundError('webhook not found');
    const notificationId = await enqueueNotification(tx, core.now(), { tenantId: owner === OPERATORS ? null : owner, event: 'webhook.test', payload: { webhookId, owner } });
    await auditInTx(tx, batch, core, principal, meta, { tenantId: owner, action: 'webhook.test', target: plainTarget(`webhook:${webhookId} notification:${notificationId}`), result: 'ok' });
    return { notificationId };
  });
}

const SIGNER: Actor = { kind: 'system', name: 'notifications' };

/** The webhook's signing secret, unwrapped through the KMS for one delivery; that use is audited in the owner's chain. */
export async function webhookSecret(core: Core, row: { owner: string; webhook_id: string; secret_wrapped: Buffer }): Promise<Buffer> {
  const secret = await core.kms.unwrapKey(kekOf(row.owner), row.secret_wrapped, secretAad(row.owner, row.webhook_id));
  try {
    const target = plainTarget(`${kekOf(row.owner)} webhook:${row.webhook_id} purpose:sign kek-version:${wrappedKeyVersion(row.secret_wrapped)}`);
    await auditRead(core, SIGNER, { requestId: '-', sourceIp: '-' }, { tenantId: row.owner, action: 'kms.unwrap', target, result: 'ok' });
  } catch (error) {
    secret.fill(0);
    throw error;
  }
  return secret;
}
