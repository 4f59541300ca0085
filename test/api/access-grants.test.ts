import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { expireGrants } from '../../src/core/access-requests.js';
import { startIdentityProviders, type IdentityProviders } from '../support/identity-providers.js';
import { DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

after(stopPostgres);

let idp: IdentityProviders;
before(async () => {
  idp = await startIdentityProviders();
});
after(() => idp.close());

const MINUTE = 60_000;

for (const driver of DRIVERS) {
  describe(`operators and access grants, on ${driver}`, () => {
    let h: Harness;
    let offset = 0;
    const clock = () => Date.now() + offset;
    let t: { tenantId: string; apiKey: string };
    let base: string;

    /** A token valid by the server's clock, which the tests move forward. */
    const oidc = (claims: Record<string, unknown>) => idp.oidcToken(claims, clock());
    const operator = (sub: string, amr = ['pwd', 'otp']) => oidc({ sub, amr });
    const owner = () => oidc({ sub: 'owner-a', email: 'owner@tenant-a.example', email_verified: true });
    const as = async (token: Promise<string>, method: string, path: string, body?: unknown) =>
      h.call(method, path, { headers: { authorization: `Bearer ${await token}` }, ...(body === undefined ? {} : { body }) });
    const auditActions = async () => {
      const res = await h.call('GET', `${base}/audit?limit=1000`, { key: t.apiKey });
      assert.equal(res.status, 200, res.text);
      return res.json.events as { actor: string; action: string; target: string; result: string }[];
    };
    const ask = async (sub: string, body: Record<string, unknown> = {}) => {
      const res = await as(operator(sub), 'POST', `${base}/access-requests`, { reason: 'customer ticket: export fails', ticket: 'SUP-1234', scope: 'read', durationMinutes: 60, ...body });
      assert.equal(res.status, 201, res.text);
      return res.json as { requestId: string; operatorId: string; status: string };
    };
    const record = `/collections/notes/records/n1`;

    before(async () => {
      h = await startHarness(driver, {
        now: clock,
        env: {
          ...idp.env(),
          STRONGROOM_OPERATORS__IDENTITIES: JSON.stringify([
            { issuer: idp.issuer, subject: 'sre-1', roles: ['sre'] },
            { issuer: idp.issuer, subject: 'sre-2', roles: ['sre'] },
            { issuer: idp.issuer, subject: 'sre-3', roles: ['sre'] },
            { issuer: idp.issuer, subject: 'sec-1', roles: ['security'] },
            { issuer: idp.issuer, subject: 'sec-2', roles: ['security'] },
            { issuer: idp.issuer, subject: 'sup-1', roles: ['support'] },
            { issuer: idp.firebaseIssuer, emailDomain: 'ops.example', roles: ['support'] },
          ]),
        },
      });
      t = await h.tenant('grants');
      base = `/v1/tenants/${t.tenantId}`;
      const invited = await h.call('POST', `${base}/members`, { key: t.apiKey, body: { email: 'owner@tenant-a.example', role: 'owner' } });
      assert.equal(invited.status, 201, invited.text);
      assert.equal((await h.call('PUT', `${base}/collections/notes`, { key: t.apiKey, body: { indexes: [] } })).status, 201);
      assert.equal((await h.call('PUT', `${base}${record}`, { key: t.apiKey, body: { text: 'customer data' } })).status, 201);
      assert.equal((await as(owner(), 'GET', base)).status, 200, 'the owner claims the invitation');
    });
    after(() => h.close());

    test('an operator without MFA is refused, on operator routes and on the tenant, and the tenant sees the attempt', async () => {
      for (const path of ['/v1/ops/tenants', base, `${base}${record}`]) {
        const res = await as(operator('sre-1', ['pwd']), 'GET', path);
        assert.equal(res.status, 403, `${path}: ${res.text}`);
        assert.equal(res.json.error.code, 'mfa_required');
      }
      const refused = (await auditActions()).filter((e) => e.action === 'auth.failed' && e.target.includes('reason:mfa_required'));
      assert.equal(refused.length, 2);
    });

    test('someone on no allow-list is no operator: 403 on operator routes, 404 on a tenant', async () => {
      assert.equal((await as(operator('stranger'), 'GET', '/v1/ops/tenants')).status, 403);
      assert.equal((await as(operator('stranger'), 'GET', base)).status, 404);
      assert.equal((await h.call('GET', '/v1/ops/tenants', { key: t.apiKey })).status, 403, 'a tenant API key is not an operator');
    });

    test("an operator with MFA manages metadata but reads no tenant data without a grant", async () => {
      const tenants = await as(operator('sre-1'), 'GET', '/v1/ops/tenants');
      assert.equal(tenants.status, 200, tenants.text);
      assert.ok(tenants.json.tenants.some((x: { tenantId: string }) => x.tenantId === t.tenantId));
      assert.equal((await as(operator('sre-1'), 'GET', base)).status, 200);
      for (const [method, path, body] of [
        ['GET', `${base}${record}`],
        ['GET', `${base}/collections/notes/records`],
        ['PUT', `${base}${record}`, { text: 'overwritten by staff' }],
        ['GET', `${base}/members`],
        ['GET', `${base}/audit`],
        ['POST', `${base}/api-keys`, { scopes: ['read'] }],
      ] as const) {
        const res = await as(operator('sec-1'), method, path, body);
        assert.equal(res.status, 403, `${method} ${path}: ${res.text}`);
      }
      assert.equal((await as(operator('sre-1'), 'GET', `/v1/tenants/t_aaaaaaaaaaaaaaaa`)).status, 404, 'a tenant that does not exist');
    });

    test("request → approve → read allowed within scope → expiry → refused, all in the tenant's audit log", async () => {
      const asked = await ask('sre-1');
      assert.equal(asked.status, 'pending');
      assert.match(asked.operatorId, /^op_[a-z2-7]{16}$/);
      assert.equal((await as(operator('sre-1'), 'GET', `${base}${record}`)).status, 403, 'pending is not approved');
      const again = await as(operator('sre-1'), 'POST', `${base}/access-requests`, { reason: 'again', ticket: 'SUP-1', scope: 'read', durationMinutes: 5 });
      assert.equal(again.status, 409, 'one open request per operator and tenant');

      const listed = await as(owner(), 'GET', `${base}/access-requests`);
      assert.equal(listed.status, 200, listed.text);
      const seen = listed.json.accessRequests.find((r: { requestId: string }) => r.requestId === asked.requestId);
      assert.deepEqual([seen.reason, seen.ticket, seen.scope, seen.durationMinutes], ['customer ticket: export fails', 'SUP-1234', 'read', 60]);
      assert.equal((await h.call('GET', `${base}/access-requests`, { key: t.apiKey })).status, 200, 'an admin key may watch');
      assert.equal((await h.call('POST', `${base}/access-requests/${asked.requestId}/approve`, { key: t.apiKey })).status, 403, 'but no key lets staff in');
      assert.equal((await as(operator('sre-2'), 'POST', `${base}/access-requests/${asked.requestId}/approve`)).status, 403, 'nor an operator');

      const approved = await as(owner(), 'POST', `${base}/access-requests/${asked.requestId}/approve`);
      assert.equal(approved.status, 200, approved.text);
      assert.equal(approved.json.status, 'approved');
      assert.equal(Date.parse(approved.json.expiresAt) - Date.parse(approved.json.decidedAt), 60 * MINUTE);

      const read = await as(operator('sre-1'), 'GET', `${base}${record}`);
      assert.equal(read.status, 200, read.text);
      assert.deepEqual(read.json.data, { text: 'customer data' });
      assert.equal((await as(operator('sre-1'), 'PUT', `${base}${record}`, { text: 'changed' })).status, 403, 'read scope only');
      assert.equal((await as(operator('sre-1'), 'GET', `${base}/audit`)).status, 403, 'a grant covers records, not the audit log');
      assert.equal((await as(operator('sre-2'), 'GET', `${base}${record}`)).status, 403, 'the grant is for one operator');

      offset += 61 * MINUTE;
      assert.equal((await as(operator('sre-1'), 'GET', `${base}${record}`)).status, 403, 'expired');
      const after = await as(owner(), 'GET', `${base}/access-requests`);
      assert.equal(after.json.accessRequests.find((r: { requestId: string }) => r.requestId === asked.requestId).status, 'expired');

      const events = (await auditActions()).filter((e) => e.target.startsWith(`access-request:${asked.requestId}`) || e.actor.includes(asked.requestId));
      assert.deepEqual(
        events.map((e) => e.action),
        ['access.request', 'access.approve', 'record.get', 'access.expire'],
      );
      assert.equal(events[2]!.actor, `operator:${asked.operatorId} grant:${asked.requestId}`);
      assert.equal(events[3]!.actor, 'system:access-grants');
      const outbox = await h.core.db.reader.selectFrom('outbox').select(['event_type', 'payload']).where('tenant_id', '=', t.tenantId).execute();
      const about = outbox.filter((n) => JSON.parse(n.payload).requestId === asked.requestId).map((n) => n.event_type);
      assert.deepEqual(about.sort(), ['access.approved', 'access.requested']);
    });

    test('a denied request grants nothing; a decided request cannot be decided again', async () => {
      const asked = await ask('sre-2');
      const denied = await as(owner(), 'POST', `${base}/access-requests/${asked.requestId}/deny`);
      assert.equal(denied.status, 200, denied.text);
      assert.equal(denied.json.status, 'denied');
      assert.equal((await as(operator('sre-2'), 'GET', `${base}${record}`)).status, 403);
      assert.equal((await as(owner(), 'POST', `${base}/access-requests/${asked.requestId}/approve`)).status, 409);
      assert.equal((await as(owner(), 'POST', `${base}/access-requests/ar_aaaaaaaaaaaaaaaa/approve`)).status, 404);
    });

    test('a revoked grant ends at once; operators revoke only their own unless they are security', async () => {
      const asked = await ask('sre-3');
      assert.equal((await as(owner(), 'POST', `${base}/access-requests/${asked.requestId}/approve`)).status, 200);
      assert.equal((await as(operator('sre-3'), 'GET', `${base}${record}`)).status, 200);
      assert.equal((await as(operator('sup-1'), 'POST', `${base}/access-requests/${asked.requestId}/revoke`)).status, 403);
      const revoked = await as(owner(), 'POST', `${base}/access-requests/${asked.requestId}/revoke`);
      assert.equal(revoked.status, 200, revoked.text);
      assert.equal(revoked.json.status, 'revoked');
      assert.equal((await as(operator('sre-3'), 'GET', `${base}${record}`)).status, 403);
      assert.ok((await auditActions()).some((e) => e.action === 'access.revoke' && e.target === `access-request:${asked.requestId}`));
    });

    test('break-glass: a second security operator approves an emergency request, and the tenant is notified at once', async () => {
      const ordinary = await ask('sup-1');
      assert.equal((await as(operator('sec-1'), 'POST', `${base}/access-requests/${ordinary.requestId}/break-glass`)).status, 409, 'not an emergency request');
      assert.equal((await as(operator('sup-1'), 'POST', `${base}/access-requests/${ordinary.requestId}/revoke`)).status, 200, 'the requester withdraws it');

      const own = await ask('sec-2', { breakGlass: true, scope: 'read-write', durationMinutes: 30 });
      assert.equal((await as(operator('sec-2'), 'POST', `${base}/access-requests/${own.requestId}/break-glass`)).status, 403, 'never one’s own');
      assert.equal((await as(operator('sre-1'), 'POST', `${base}/access-requests/${own.requestId}/break-glass`)).status, 403, 'security role only');
      const approved = await as(operator('sec-1'), 'POST', `${base}/access-requests/${own.requestId}/break-glass`);
      assert.equal(approved.status, 200, approved.text);
      assert.equal(approved.json.decidedBy.startsWith('operator:op_'), true);

      const write = await as(operator('sec-2'), 'PUT', `${base}${record}`, { text: 'repaired by staff' });
      assert.equal(write.status, 200, write.text);
      const events = (await auditActions()).filter((e) => e.target.startsWith(`access-request:${own.requestId}`) || e.actor.includes(own.requestId));
      assert.deepEqual(events.map((e) => e.action), ['access.request', 'access.breakglass', 'record.put']);
      const outbox = await h.core.db.reader.selectFrom('outbox').select(['event_type', 'payload']).where('tenant_id', '=', t.tenantId).execute();
      assert.ok(outbox.some((n) => n.event_type === 'access.breakglass' && JSON.parse(n.payload).requestId === own.requestId));
      assert.equal((await as(owner(), 'POST', `${base}/access-requests/${own.requestId}/revoke`)).status, 200);
    });

    test('grants nobody uses expire on schedule too, once, with an audit event', async () => {
      const asked = await ask('sre-2', { durationMinutes: 5 });
      assert.equal((await as(owner(), 'POST', `${base}/access-requests/${asked.requestId}/approve`)).status, 200);
      assert.equal(await expireGrants(h.core), 0);
      offset += 6 * MINUTE;
      // The server's own expiry job may get there first: either way it is expired once.
      await expireGrants(h.core);
      assert.equal(await expireGrants(h.core), 0);
      const expiries = (await auditActions()).filter((e) => e.action === 'access.expire' && e.target === `access-request:${asked.requestId}`);
      assert.equal(expiries.length, 1);
    });

    test('operators by verified e-mail domain through Firebase need the configured second factor', async () => {
      const firebase = (claims: Record<string, unknown>) => {
        const seconds = Math.floor(clock() / 1000);
        return idp.firebaseToken({ sub: 'support-uid', email: 'ana@ops.example', email_verified: true, iat: seconds - 5, auth_time: seconds - 60, exp: seconds + 300, ...claims });
      };
      const withPhone = await as(firebase({ firebase: { sign_in_provider: 'password', sign_in_second_factor: 'phone' } }), 'GET', '/v1/ops/tenants');
      assert.equal(withPhone.status, 200, withPhone.text);
      const noFactor = await as(firebase({ firebase: { sign_in_provider: 'password' } }), 'GET', '/v1/ops/tenants');
      assert.equal(noFactor.json.error.code, 'mfa_required');
      const unverified = await as(firebase({ email_verified: false, firebase: { sign_in_second_factor: 'phone' } }), 'GET', '/v1/ops/tenants');
      assert.equal(unverified.status, 403);
      assert.equal(unverified.json.error.code, 'forbidden');
      const lookalike = await as(firebase({ email: 'ana@evil-ops.example', firebase: { sign_in_second_factor: 'phone' } }), 'GET', '/v1/ops/tenants');
      assert.equal(lookalike.status, 403);
    });
  });
}
