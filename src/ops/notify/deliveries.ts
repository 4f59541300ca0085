import { createHmac, randomInt } from 'node:crypto';
import { auditInTx, plainTarget, SYSTEM_CHAIN } from '../../core/audit-events.js';
import type { Core, Principal, RequestMeta } from '../../core/context.js';
import { randomId } from '../../core/ids.js';
import { OPERATORS, webhookSecret } from '../../core/notifications/webhooks.js';
import { NotFoundError } from '../../errors.js';
import { authorize } from '../../policy/authorize.js';

/** How a notification leaves the deployment; the server wires these to the egress-checked clients. */
export interface Transports {
  /** POSTs `body`; resolves with the status (a 3xx is not followed). */
  webhook(url: string, headers: Record<string, string>, body: string): Promise<{ status: number }>;
  /** Null when no SMTP server is configured: then no e-mail deliveries are made. */
  email: ((message: { id: string; to: string[]; event: string; tenantId: string | null; details: Record<string, string | number | boolean> }) => Promise<void>) | null;
  /** Who receives a tenant's notifications by e-mail: its owners' and admins' addresses. */
  tenantRecipients(tenantId: string): Promise<string[]>;
  operatorEmails: string[];
}

export interface RetryPolicy {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Exponential backoff with jitter: half the delay fixed, half random, so retries neither stampede nor come at once. */
export function backoffMs(policy: RetryPolicy, attempts: number): number {
  const delay = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempts - 1));
  return Math.ceil(delay / 2 + randomInt(0, Math.max(1, Math.floor(delay / 2))));
}

/**
 * Turns queued notifications into deliveries, one per destination: the webhooks subscribed to the
 * event (the tenant's and the operators'), and an e-mail to the tenant's owners and admins (and
 * to the operators, for break-glass use and the deployment's own events, such as a failed drill). In one transaction per notification, so a crash leaves
 * either the notification or its deliveries.
 */
export async function expandOutbox(core: Core, transports: Pick<Transports, 'email' | 'operatorEmails'>): Promise<number> {
  const queued = await core.db.reader.selectFrom('outbox').selectAll().where('expanded_at', 'is', null).orderBy('created_at').limit(100).execute();
  for (const n of queued) {
    const payload = JSON.parse(n.payload) as Record<string, string>;
    const owners = n.tenant_id === null ? [OPERATORS] : [n.tenant_id, OPERATORS];
    const hooks = await core.db.reader.selectFrom('webhooks').select(['owner', 'webhook_id', 'events']).where('owner', 'in', owners).execute();
    const targets: { channel: string; target: string }[] = hooks
      .filter((h) => (n.event_type === 'webhook.test' ? h.webhook_id === payload.webhookId : h.events.split(',').includes(n.event_type)))
      .map((h) => ({ channel: 'webhook', target: `${h.owner}/${h.webhook_id}` }));
    if (transports.email !== null && n.event_type !== 'webhook.test') {
      if (n.tenant_id !== null) targets.push({ channel: 'email', target: `owners:${n.tenant_id}` });
      if ((n.tenant_id === null || n.event_type === 'access.breakglass') && transports.operatorEmails.length > 0) targets.push({ channel: 'email', target: 'operators' });
    }
    await core.committer.submit(SYSTEM_CHAIN, async (tx) => {
      const now = core.now();
      for (const t of targets) {
        await tx
          .insertInto('deliveries')
          .values({ delivery_id: `d_${randomId(10)}`, notification_id: n.id, tenant_id: n.tenant_id, event_type: n.event_type, ...t, status: 'pending', attempts: 0, next_attempt_at: now, last_error: null, created_at: now, delivered_at: null })
          .execute();
      }
      await tx.updateTable('outbox').set({ expanded_at: now, status: 'expanded' }).where('id', '=', n.id).execute();
    });
  }
  return queued.length;
}

/** Standard Webhooks: `v1,` + base64 HMAC-SHA256 over `id.timestamp.body` with the endpoint's secret. */
export function signWebhook(secret: Buffer, id: string, timestampSeconds: number, body: string): string {
  return `v1,${createHmac('sha256', secret).update(`${id}.${timestampSeconds}.${body}`).digest('base64')}`;
}

type Delivery = Awaited<ReturnType<typeof dueDeliveries>>[number];

const dueDeliveries = (core: Core, limit: number) =>
  core.db.reader.selectFrom('deliveries').selectAll().where('status', '=', 'pending').where('next_attempt_at', '<=', core.now()).orderBy('next_attempt_at').limit(limit).execute();

/** One attempt at one delivery; throws with a message fit for the delivery log (no secret) on failure. */
async function attempt(core: Core, transports: Transports, d: Delivery): Promise<string> {
  const notification = await core.db.reader.selectFrom('outbox').select(['payload', 'created_at']).where('id', '=', d.notification_id).executeTakeFirstOrThrow();
  const details = JSON.parse(notification.payload) as Record<string, string | number | boolean>;
  if (d.channel === 'email') {
    const to = d.target === 'operators' ? transports.operatorEmails : await transports.tenantRecipients(d.target.slice('owners:'.length));
    if (to.length === 0) return 'no recipients';
    await transports.email!({ id: d.delivery_id, to, event: d.event_type, tenantId: d.tenant_id, details });
    return `sent to ${to.length} recipients`;
  }
  const [owner, webhookId] = d.target.split('/') as [string, string];
  const hook = await core.db.reader.selectFrom('webhooks').selectAll().where('owner', '=', owner).where('webhook_id', '=', webhookId).executeTakeFirst();
  if (!hook) return 'webhook deleted';
  // The tenant is named, so an operators' endpoint that hears every tenant's events can tell them apart.
  const data = d.tenant_id === null ? details : { tenantId: d.tenant_id, ...details };
  const body = JSON.stringify({ type: d.event_type, timestamp: new Date(Number(notification.created_at)).toISOString(), data });
  const timestamp = Math.floor(core.now() / 1000);
  const secret = await webhookSecret(core, hook);
  let signature: string;
  try {
    signature = signWebhook(secret, d.delivery_id, timestamp, body);
  } finally {
    secret.fill(0);
  }
  const headers = { 'content-type': 'application/json', 'webhook-id': d.delivery_id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature, 'user-agent': 'Strongroom-Webhooks/1' };
  const { status } = await transports.webhook(hook.url, headers, body);
  if (status < 200 || status > 299) throw new Error(status >= 300 && status < 400 ? `HTTP ${status} (redirects are not followed)` : `HTTP ${status}`);
  return `HTTP ${status}`;
}

/**
 * Attempts every due delivery once: success marks it delivered; a failure schedules the next
 * attempt with backoff, or makes it a dead letter after `maxAttempts`. Every attempt is logged.
 * At-least-once: a crash between sending and recording means the receiver may see it twice, with
 * the same `webhook-id`.
 */
export async function deliverDue(core: Core, transports: Transports, policy: RetryPolicy): Promise<{ delivered: number; failed: number; dead: number }> {
  const result = { delivered: 0, failed: 0, dead: 0 };
  for (const d of await dueDeliveries(core, 50)) {
    const started = Date.now();
    let ok = true;
    let detail: string;
    try {
      detail = await attempt(core, transports, d);
    } catch (error) {
      ok = false;
      detail = (error instanceof Error ? error.message : String(error)).slice(0, 300);
    }
    const attempts = d.attempts + 1;
    const dead = !ok && attempts >= policy.maxAttempts;
    await core.committer.submit(SYSTEM_CHAIN, async (tx) => {
      const now = core.now();
      await tx.insertInto('delivery_attempts').values({ delivery_id: d.delivery_id, attempt: attempts, at: now, ok: ok ? 1 : 0, detail, duration_ms: Date.now() - started }).execute();
      await tx
        .updateTable('deliveries')
        .set(ok ? { status: 'delivered', attempts, delivered_at: now, last_error: null } : { status: dead ? 'dead' : 'pending', attempts, last_error: detail, next_attempt_at: now + backoffMs(policy, attempts) })
        .where('delivery_id', '=', d.delivery_id)
        .execute();
    });
    if (ok) result.delivered += 1;
    else if (dead) result.dead += 1;
    else result.failed += 1;
  }
  return result;
}

export interface DeliveryView {
  deliveryId: string;
  notificationId: string;
  tenantId: string | null;
  event: string;
  channel: string;
  target: string;
  status: string;
  attempts: number;
  lastError: string | null;
  createdAt: string;
  log: { attempt: number; at: string; ok: boolean; detail: string }[];
}

/** Deliveries in a state (dead letters, by default), newest first, with their attempt logs. */
export async function listDeliveries(core: Core, principal: Principal, status = 'dead'): Promise<DeliveryView[]> {
  authorize(principal, 'ops.notifications', { tenantId: null });
  const rows = await core.db.reader.selectFrom('deliveries').selectAll().where('status', '=', status).orderBy('created_at', 'desc').limit(200).execute();
  const views: DeliveryView[] = [];
  for (const d of rows) {
    const log = await core.db.reader.selectFrom('delivery_attempts').selectAll().where('delivery_id', '=', d.delivery_id).orderBy('attempt').execute();
    views.push({
      deliveryId: d.delivery_id,
      notificationId: d.notification_id,
      tenantId: d.tenant_id,
      event: d.event_type,
      channel: d.channel,
      target: d.target,
      status: d.status,
      attempts: d.attempts,
      lastError: d.last_error,
      createdAt: new Date(Number(d.created_at)).toISOString(),
      log: log.map((a) => ({ attempt: a.attempt, at: new Date(Number(a.at)).toISOString(), ok: a.ok === 1, detail: a.detail })),
    });
  }
  return views;
}

/** Gives a dead letter one more attempt, now (failing again, it is dead again); audited in the system chain. */
export async function retryDelivery(core: Core, principal: Principal, meta: RequestMeta, deliveryId: string): Promise<void> {
  authorize(principal, 'ops.notifications', { tenantId: null });
  await core.committer.submit(SYSTEM_CHAIN, async (tx, batch) => {
    const result = await tx.updateTable('deliveries').set({ status: 'pending', next_attempt_at: core.now() }).where('delivery_id', '=', deliveryId).where('status', '=', 'dead').executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) throw new NotFoundError('no dead letter with that id');
    await auditInTx(tx, batch, core, principal, meta, { tenantId: SYSTEM_CHAIN, action: 'delivery.retry', target: plainTarget(`delivery:${deliveryId}`), result: 'ok' });
  });
}
