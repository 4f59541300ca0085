import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { apiKeyParts, startHarness, type Harness } from '../support/strongroom.js';

let h: Harness;
let a: { tenantId: string; apiKey: string };
let clockOffset = 0;
before(async () => {
  h = await startHarness('sqlite', {
    now: () => Date.now() + clockOffset,
    env: { STRONGROOM_AUTH__FAILURE_LIMIT__MAX_FAILURES: '3', STRONGROOM_AUTH__FAILURE_LIMIT__WINDOW_SECONDS: '60' },
  });
  a = await h.tenant('a');
});
after(() => h.close());

const wrongSecret = (key: string) => `${key.slice(0, key.length - 4)}AAAA`;

test("failed authentications against a tenant are audited in that tenant's chain, naming the key id, never the secret", async () => {
  const res = await h.call('GET', `/v1/tenants/${a.tenantId}`, { key: wrongSecret(a.apiKey) });
  assert.equal(res.status, 401);
  const audit = await h.call('GET', `/v1/tenants/${a.tenantId}/audit?limit=500`, { key: a.apiKey });
  const failed = audit.json.events.filter((e: { action: string }) => e.action === 'auth.failed');
  assert.equal(failed.length, 1);
  const keyId = apiKeyParts(a.apiKey).keyId;
  assert.equal(failed[0].target, `api-key:${keyId} reason:invalid`);
  assert.equal(failed[0].result, 'denied');
  assert.ok(!audit.text.includes(apiKeyParts(wrongSecret(a.apiKey)).secret));
});

test('after too many failures from one source, every attempt from it gets 429 with Retry-After until the window ends', async () => {
  // One failure is already counted by the test above; two more reach the limit of three.
  for (let i = 0; i < 2; i++) assert.equal((await h.call('GET', `/v1/tenants/${a.tenantId}`, { key: wrongSecret(a.apiKey) })).status, 401);
  const limited = await h.call('GET', `/v1/tenants/${a.tenantId}`, { key: a.apiKey });
  assert.equal(limited.status, 429);
  assert.equal(limited.json.error.code, 'rate_limited');
  assert.ok(Number(limited.headers['retry-after']) > 0 && Number(limited.headers['retry-after']) <= 60);
  clockOffset = 61_000;
  assert.equal((await h.call('GET', `/v1/tenants/${a.tenantId}`, { key: a.apiKey })).status, 200, 'the window has ended');
});

test('failures against a tenant that does not exist are refused the same way and audited nowhere', async () => {
  const res = await h.call('GET', '/v1/tenants/t_aaaaaaaaaaaaaaaa', { key: wrongSecret(a.apiKey) });
  assert.equal(res.status, 401);
  const rows = await h.core.db.reader.selectFrom('audit_events').select('tenant_id').where('tenant_id', '=', 't_aaaaaaaaaaaaaaaa').execute();
  assert.equal(rows.length, 0);
});
