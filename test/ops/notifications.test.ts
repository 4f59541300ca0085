import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { breakGlass, requestAccess } from '../../src/core/access-requests.js';
import { terminateTenant } from '../../src/core/lifecycle/termination.js';
import type { Principal } from '../../src/core/context.js';
import { listDeliveries, retryDelivery } from '../../src/ops/notify/deliveries.js';
import { runCli, spawnServer, tempDirs } from '../support/cli-process.js';
import { startHarness, type Harness } from '../support/strongroom.js';
import { smtpPki, startSmtp, type SmtpFixture, type SmtpPki } from '../support/smtp-server.js';
import { startWebhookReceiver, verifyWebhook, type WebhookReceiver } from '../support/webhook-receiver.js';

const tempDir = tempDirs('strongroom-notifications-');
const SRE: Principal = { kind: 'operator', operatorId: 'op_notifications', roles: ['sre'], grant: null };
const SECURITY: Principal = { kind: 'operator', operatorId: 'op_securitydesk', roles: ['security'], grant: null };
const META = { requestId: 'test', sourceIp: 'local' };

const notifyEnv = (receiver: WebhookReceiver): Record<string, string> => ({
  // Only the receiver's loopback address is let through; everything else private stays refused.
  STRONGROOM_EGRESS__ALLOWED_NETWORKS: '["127.0.0.1/32"]',
  STRONGROOM_EGRESS__CA_FILE: receiver.caFile,
  STRONGROOM_NOTIFICATIONS__BASE_DELAY_SECONDS: '1',
  STRONGROOM_NOTIFICATIONS__MAX_DELAY_SECONDS: '2',
  STRONGROOM_NOTIFICATIONS__MAX_ATTEMPTS: '3',
});

describe('signed webhooks', () => {
  let receiver: WebhookReceiver;
  let h: Harness;
  let t: { tenantId: string; apiKey: string };
  const clock = { now: Date.parse('2026-11-29T12:00:00Z') };
  /** One run of the delivery job, after the server's own run if that holds the job's lease. */
  const deliver = async () => {
    while ((await h.server.jobs.runNow('notifications.deliver')) === null) await new Promise((resolve) => setTimeout(resolve, 20));
  };

  before(async () => {
    receiver = await startWebhookReceiver();
    h = await startHarness('sqlite', { now: () => clock.now, env: notifyEnv(receiver) });
    t = await h.tenant('webhooks');
  });
  after(async () => {
    await h.close();
    await receiver.close();
  });

  const register = async (events: string[]) => {
    const res = await h.call('POST', `/v1/tenants/${t.tenantId}/webhooks`, { key: t.apiKey, body: { url: receiver.url, events } });
    assert.equal(res.status, 201, res.text);
    assert.match(res.json.secret as string, /^whsec_[A-Za-z0-9+/]{43}=$/);
    return res.json as { webhookId: string; secret: string };
  };

  test('events reach the webhook signed so that the customer can verify them; tampered and replayed deliveries fail verification', async () => {
    const hook = await register(['access.requested', 'webhook.test']);
    const listed = await h.call('GET', `/v1/tenants/${t.tenantId}/webhooks`, { key: t.apiKey });
    assert.equal(JSON.stringify(listed.json).includes(hook.secret), false, 'the secret is shown once, never listed');
    assert.equal((await h.call('POST', `/v1/tenants/${t.tenantId}/webhooks/${hook.webhookId}/test`, { key: t.apiKey })).status, 202);
    await requestAccess(h.core, SRE, META, t.tenantId, { reason: 'incident 7', ticket: 'INC-7', scope: 'read', durationMinutes: 30, breakGlass: false });
    await deliver();
    await receiver.waitFor(2);
    const now = Math.floor(clock.now / 1000);
    const types = receiver.received.map((r) => (JSON.parse(r.body) as { type: string }).type).sort();
    assert.deepEqual(types, ['access.requested', 'webhook.test']);
    for (const delivery of receiver.received) {
      assert.ok(verifyWebhook(hook.secret, delivery, now), 'the signature verifies with the secret shown at registration');
      assert.equal(verifyWebhook(hook.secret, { ...delivery, body: delivery.body.replace('access', 'acce55') }, now) && delivery.body.includes('access'), false, 'a tampered body fails');
      assert.equal(verifyWebhook(hook.secret, delivery, now + 3600), false, 'a replay an hour later fails');
      assert.equal(verifyWebhook(`whsec_${Buffer.alloc(32).toString('base64')}`, delivery, now), false, 'another secret fails');
    }
    const requested = JSON.parse(receiver.received.find((r) => r.body.includes('access.requested'))!.body) as { data: Record<string, unknown> };
    assert.equal(requested.data.tenantId, t.tenantId);
    assert.equal(JSON.stringify(requested).includes('incident 7'), false, 'the reason stays sealed: webhooks carry ids only');
    const audit = await h.call('GET', `/v1/tenants/${t.tenantId}/audit?limit=500`, { key: t.apiKey });
    assert.ok((audit.json.events as { action: string; target: string }[]).some((e) => e.action === 'kms.unwrap' && e.target.includes(`webhook:${hook.webhookId} purpose:sign`)), 'each use of the signing secret is audited');
    await h.call('DELETE', `/v1/tenants/${t.tenantId}/webhooks/${hook.webhookId}`, { key: t.apiKey });
  });

  test('receiver down: retries with backoff until a dead letter, which an operator lists and retries once it is back', async () => {
    const hook = await register(['webhook.test']);
    receiver.received.length = 0;
    receiver.status = 503;
    assert.equal((await h.call('POST', `/v1/tenants/${t.tenantId}/webhooks/${hook.webhookId}/test`, { key: t.apiKey })).status, 202);
    await deliver();
    assert.equal(receiver.received.length, 1);
    await deliver();
    assert.equal(receiver.received.length, 1, 'not retried before its backoff');
    for (const attempt of [2, 3]) {
      clock.now += 3_000;
      await deliver();
      assert.equal(receiver.received.length, attempt);
    }
    clock.now += 3_000;
    await deliver();
    assert.equal(receiver.received.length, 3, 'a dead letter is not retried by itself');
    const dead = await listDeliveries(h.core, SRE);
    assert.equal(dead.length, 1);
    assert.deepEqual(dead[0]!.log.map((a) => [a.attempt, a.ok, a.detail]), [[1, false, 'HTTP 503'], [2, false, 'HTTP 503'], [3, false, 'HTTP 503']]);
    assert.equal(new Set(receiver.received.map((r) => r.headers['webhook-id'])).size, 1, 'one webhook-id across retries, for de-duplication');

    receiver.status = 200;
    await retryDelivery(h.core, SRE, META, dead[0]!.deliveryId);
    await deliver();
    assert.equal(receiver.received.length, 4);
    assert.deepEqual(await listDeliveries(h.core, SRE), []);
    const delivered = await listDeliveries(h.core, SRE, 'delivered');
    assert.deepEqual(delivered.find((d) => d.deliveryId === dead[0]!.deliveryId)?.log.map((a) => a.ok), [false, false, false, true], 'the attempt log keeps every attempt');
  });

  test('webhook URLs are HTTPS without credentials; a URL to a private or metadata address is refused when delivering', async () => {
    const post = (url: string) => h.call('POST', `/v1/tenants/${t.tenantId}/webhooks`, { key: t.apiKey, body: { url, events: ['webhook.test'] } });
    assert.equal((await post('http://example.com/hook')).status, 400);
    assert.equal((await post('https://user:pw@example.com/hook')).status, 400);
    const before = (await listDeliveries(h.core, SRE, 'pending')).length;
    for (const url of ['https://169.254.169.254/latest/meta-data', 'https://10.0.0.1/hook', 'https://[::1]/hook', 'https://localhost:1/hook']) {
      const created = await post(url);
      assert.equal(created.status, 201, created.text);
      assert.equal((await h.call('POST', `/v1/tenants/${t.tenantId}/webhooks/${created.json.webhookId as string}/test`, { key: t.apiKey })).status, 202);
    }
    await deliver();
    const pending = await listDeliveries(h.core, SRE, 'pending');
    assert.equal(pending.length - before, 4);
    assert.equal(pending.filter((p) => p.attempts > 0).length, pending.length, 'every one was tried');
    for (const d of pending.filter((p) => p.event === 'webhook.test' && p.attempts > 0)) assert.match(d.lastError ?? '', /not allowed|refused|private|loopback|link-local|metadata/i, `${d.target}: ${d.lastError}`);
  });
});

describe('e-mail notifications', () => {
  let pki: SmtpPki;
  let smtp: SmtpFixture;
  let receiver: WebhookReceiver;
  let h: Harness;
  before(async () => {
    pki = await smtpPki();
    smtp = await startSmtp(pki);
    receiver = await startWebhookReceiver();
    h = await startHarness('sqlite', {
      env: {
        ...notifyEnv(receiver),
        STRONGROOM_EGRESS__ALLOWED_NETWORKS: '["127.0.0.1/32","::1/128"]',
        STRONGROOM_SMTP__HOST: 'localhost',
        STRONGROOM_SMTP__PORT: String(smtp.port),
        STRONGROOM_SMTP__FROM: 'notify@strongroom.example',
        STRONGROOM_SMTP__CA_FILE: pki.caFile,
        STRONGROOM_NOTIFICATIONS__OPERATOR_EMAILS: '["security@saas.example"]',
        STRONGROOM_NOTIFICATIONS__LINK_URL: 'https://console.saas.example/',
      },
    });
  });
  after(async () => {
    await h.close();
    await smtp.close();
    await receiver.close();
  });

  test('break-glass access sends the tenant owners and the operators an e-mail over verified TLS, and the tenant a signed webhook', async () => {
    const t = await h.tenant('Break Glass Inc');
    const hook = await h.call('POST', `/v1/tenants/${t.tenantId}/webhooks`, { key: t.apiKey, body: { url: receiver.url, events: ['access.breakglass'] } });
    assert.equal(hook.status, 201, hook.text);
    const invited = await h.call('POST', `/v1/tenants/${t.tenantId}/members`, { key: t.apiKey, body: { email: 'owner@customer.example', role: 'owner' } });
    assert.equal(invited.status, 201, invited.text);
    // As if the owner had signed in: only active owners and admins receive notifications.
    await h.core.committer.submit(t.tenantId, (tx) => tx.updateTable('members').set({ status: 'active' }).where('tenant_id', '=', t.tenantId).execute());

    const asked = await requestAccess(h.core, SRE, META, t.tenantId, { reason: 'outage', ticket: 'INC-9', scope: 'read', durationMinutes: 15, breakGlass: true });
    await breakGlass(h.core, SECURITY, META, t.tenantId, asked.requestId);
    const deadline = Date.now() + 20_000;
    while ((smtp.received.length < 3 || receiver.acceptedIds().size < 1) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));

    assert.deepEqual(smtp.received.map((m) => m.to.join(',')).sort(), ['owner@customer.example', 'owner@customer.example', 'security@saas.example']);
    for (const mail of smtp.received) {
      assert.equal(mail.secure, true, 'delivered over TLS');
      assert.equal(mail.from, 'notify@strongroom.example');
      assert.match(mail.raw, /X-Strongroom-Notification-Id: d_[a-z2-7]{16}/i);
      assert.match(mail.raw, /Break Glass Inc/);
    }
    assert.equal(smtp.received.filter((m) => /^Subject: \[Strongroom\] Emergency access to Break Glass Inc/m.test(m.raw)).length, 2, 'the owner and the operators hear of the break-glass');
    assert.ok(smtp.received.every((m) => m.raw.includes('op_notifications')), 'the e-mails name the operator by pseudonym');
    const delivery = receiver.received.find((r) => r.status! < 300)!;
    assert.equal((JSON.parse(delivery.body) as { type: string }).type, 'access.breakglass');
    assert.ok(verifyWebhook(hook.json.secret as string, delivery, Math.floor(Date.now() / 1000)));
  });

  test("termination sends the tenant's owners an e-mail with the purge date, and the tenant a signed webhook", async () => {
    const t = await h.tenant('Ending Corp');
    const hook = await h.call('POST', `/v1/tenants/${t.tenantId}/webhooks`, { key: t.apiKey, body: { url: receiver.url, events: ['tenant.terminated'] } });
    assert.equal(hook.status, 201, hook.text);
    assert.equal((await h.call('POST', `/v1/tenants/${t.tenantId}/members`, { key: t.apiKey, body: { email: 'owner@ending.example', role: 'owner' } })).status, 201);
    await h.core.committer.submit(t.tenantId, (tx) => tx.updateTable('members').set({ status: 'active' }).where('tenant_id', '=', t.tenantId).execute());
    const delivered = receiver.acceptedIds().size;

    const terminated = await terminateTenant(h.core, SRE, META, t.tenantId, { reason: 'contract ended' });
    const mails = () => smtp.received.filter((m) => /^Subject: \[Strongroom\] Ending Corp was terminated/m.test(m.raw));
    const deadline = Date.now() + 20_000;
    while ((mails().length < 1 || receiver.acceptedIds().size <= delivered) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));

    assert.deepEqual(mails().map((m) => m.to.join(',')), ['owner@ending.example']);
    assert.ok(mails()[0]!.raw.includes(terminated.purgeAfter!.slice(0, 10)), 'the e-mail gives the purge date');
    const delivery = receiver.received.find((r) => r.status! < 300 && (JSON.parse(r.body) as { type: string }).type === 'tenant.terminated')!;
    assert.ok(delivery, 'the webhook was delivered');
    assert.equal((JSON.parse(delivery.body) as { data: { tenantId: string } }).data.tenantId, t.tenantId);
    assert.ok(verifyWebhook(hook.json.secret as string, delivery, Math.floor(Date.now() / 1000)));
  });
});

test('kill -9 with notifications pending: every one is delivered after the restart', async () => {
  const receiver = await startWebhookReceiver();
  const dir = tempDir();
  const env = notifyEnv(receiver);
  try {
    const created = await runCli(dir, ['tenant', 'create', 'crash', '--json']);
    const { tenantId, apiKey } = JSON.parse(created.stdout) as { tenantId: string; apiKey: string };
    let server = await spawnServer(dir, { env: { ...env, STRONGROOM_NOTIFICATIONS__MAX_ATTEMPTS: '100' } });
    const call = async (method: string, path: string, body?: unknown) => {
      const { request, Agent } = await import('undici');
      const { readFileSync } = await import('node:fs');
      const dispatcher = new Agent({ connect: { ca: readFileSync(`${dir}/tls/ca-cert.pem`), servername: 'localhost' } });
      const res = await request(`${server.url}${path}`, { method: method as 'POST', dispatcher, headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.body.text();
      await dispatcher.close();
      return { status: res.statusCode, json: text ? (JSON.parse(text) as Record<string, string>) : {} };
    };
    const hook = await call('POST', `/v1/tenants/${tenantId}/webhooks`, { url: receiver.url, events: ['webhook.test'] });
    assert.equal(hook.status, 201);
    receiver.status = 503;
    for (let i = 0; i < 5; i += 1) assert.equal((await call('POST', `/v1/tenants/${tenantId}/webhooks/${hook.json.webhookId}/test`)).status, 202);
    await receiver.waitFor(1);
    await server.kill9();
    receiver.status = 204;
    server = await spawnServer(dir, { env: { ...env, STRONGROOM_NOTIFICATIONS__MAX_ATTEMPTS: '100' } });
    try {
      const deadline = Date.now() + 30_000;
      while (receiver.acceptedIds().size < 5 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(receiver.acceptedIds().size, 5, `five notifications, five distinct webhook-ids, each delivered at least once; server log: ${server.stderr.join('').slice(-2000)}`);
    } finally {
      await server.stop();
    }
  } finally {
    await receiver.close();
  }
});
