import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { startIdentityProviders, type IdentityProviders } from '../support/identity-providers.js';
import { DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

let idp: IdentityProviders;
before(async () => {
  idp = await startIdentityProviders();
});
after(async () => {
  await idp.close();
  await stopPostgres();
});

const DAY = 86_400_000;

for (const driver of DRIVERS) {
  describe(`tenant termination on ${driver}`, () => {
    let h: Harness;
    let now = Date.parse('2026-11-29T12:00:00Z');
    let t: { tenantId: string; apiKey: string };
    let base: string;
    const oidc = (claims: Record<string, unknown>) => idp.oidcToken(claims, now);
    const owner = () => oidc({ sub: 'owner-t', email: 'owner@terminated.example', email_verified: true });
    const sre = () => oidc({ sub: 'sre-1', amr: ['pwd', 'otp'] });
    const as = async (token: Promise<string>, method: string, path: string, body?: unknown) =>
      h.call(method, path, { headers: { authorization: `Bearer ${await token}` }, ...(body === undefined ? {} : { body }) });
    const writeRecord = (id: string) => h.call('PUT', `${base}/collections/notes/records/${id}`, { key: t.apiKey, body: { text: id } });

    before(async () => {
      h = await startHarness(driver, {
        now: () => now,
        env: { ...idp.env(), STRONGROOM_OPERATORS__IDENTITIES: JSON.stringify([{ issuer: idp.issuer, subject: 'sre-1', roles: ['sre'] }]) },
      });
      t = await h.tenant('ending');
      base = `/v1/tenants/${t.tenantId}`;
      assert.equal((await h.call('POST', `${base}/members`, { key: t.apiKey, body: { email: 'owner@terminated.example', role: 'owner' } })).status, 201);
      assert.equal((await as(owner(), 'GET', base)).status, 200, 'the owner claims the invitation');
      assert.equal((await h.call('PUT', `${base}/collections/notes`, { key: t.apiKey, body: { indexes: [] } })).status, 201);
      assert.equal((await writeRecord('before')).status, 201);
    });
    after(() => h.close());

    test('only an owner who confirms, or an operator with a reason, terminates; never an API key', async () => {
      assert.equal((await h.call('POST', `${base}/termination`, { key: t.apiKey, body: { confirm: t.tenantId } })).status, 403, 'an admin API key');
      const unconfirmed = await as(owner(), 'POST', `${base}/termination`, {});
      assert.equal(unconfirmed.status, 400);
      assert.match(unconfirmed.json.error.message, /confirm/);
      assert.equal((await as(owner(), 'POST', `${base}/termination`, { confirm: 't_aaaaaaaaaaaaaaaa' })).status, 400, 'another id does not confirm');
      assert.equal((await as(sre(), 'POST', `${base}/termination`, {})).status, 400, 'an operator without a reason');
      assert.equal((await h.core.db.reader.selectFrom('tenants').select('status').where('id', '=', t.tenantId).executeTakeFirstOrThrow()).status, 'active');
    });

    test('a terminated tenant is read-only until the purge date, exports still read, and the owners are notified', async () => {
      const res = await as(owner(), 'POST', `${base}/termination`, { confirm: t.tenantId });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.status, 'terminated');
      assert.equal(res.json.terminatedAt, new Date(now).toISOString());
      assert.equal(res.json.purgeAfter, new Date(now + 60 * DAY).toISOString(), 'purged 60 days after, by default');
      assert.equal((await as(owner(), 'POST', `${base}/termination`, { confirm: t.tenantId })).status, 409, 'already terminated');

      const refused = await writeRecord('after');
      assert.equal(refused.status, 403);
      assert.match(refused.json.error.message, /terminated: it is read-only/);
      for (const [method, path, body] of [
        ['PUT', `${base}/collections/other`, { indexes: [] }],
        ['POST', `${base}/api-keys`, { scopes: ['read'] }],
        ['PATCH', base, { requireMfa: true }],
        ['DELETE', `${base}/collections/notes/records/before`, undefined],
      ] as const) {
        const r = await h.call(method, path, { key: t.apiKey, ...(body ? { body } : {}) });
        assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
      }
      const read = await h.call('GET', `${base}/collections/notes/records/before`, { key: t.apiKey });
      assert.equal(read.status, 200, 'reads still work');
      assert.equal((await h.call('GET', `${base}/audit?limit=10`, { key: t.apiKey })).status, 200);

      const queued = await h.core.db.reader.selectFrom('outbox').select(['event_type', 'payload']).where('tenant_id', '=', t.tenantId).where('event_type', '=', 'tenant.terminated').execute();
      assert.equal(queued.length, 1);
      assert.equal(JSON.parse(queued[0]!.payload).purgeAt, now + 60 * DAY);
    });

    test('the termination can be cancelled until the purge date, and every step is audited', async () => {
      now += 59 * DAY;
      const cancelled = await as(owner(), 'DELETE', `${base}/termination`);
      assert.equal(cancelled.status, 200, cancelled.text);
      assert.equal(cancelled.json.status, 'active');
      assert.equal(cancelled.json.purgeAfter, null);
      assert.equal((await writeRecord('again')).status, 201, 'writable again');
      assert.equal((await as(sre(), 'POST', `${base}/termination`, { reason: 'contract ended (ticket OPS-7)' })).status, 200, 'an operator terminates with a reason');
      now += 60 * DAY;
      const late = await as(owner(), 'DELETE', `${base}/termination`);
      assert.equal(late.status, 412, 'past the purge date, it cannot be cancelled');
      const events = await h.core.db.reader.selectFrom('audit_events').select(['action', 'actor', 'target']).where('tenant_id', '=', t.tenantId).where('action', 'like', 'tenant.termin%').orderBy('seq').execute();
      assert.deepEqual(events.map((e) => e.action), ['tenant.terminate', 'tenant.termination_cancel', 'tenant.terminate']);
      assert.match(events[2]!.target.toString(), /reason: contract ended \(ticket OPS-7\)/);
      assert.ok((await verifyAuditChain(h.core.db.reader, t.tenantId)).ok);
    });
  });
}
