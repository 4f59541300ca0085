import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startIdentityProviders, type IdentityProviders } from '../support/identity-providers.js';
import { DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

/** A configured issuer nothing listens for. */
const DEAD_ISSUER = 'https://localhost:1/realms/gone';

after(stopPostgres);

let idp: IdentityProviders;
before(async () => {
  idp = await startIdentityProviders();
});
after(() => idp.close());

const oidcToken = (claims: Record<string, unknown>) => idp.oidcToken(claims);
const firebaseToken = (claims: Record<string, unknown>) => idp.firebaseToken(claims);

for (const driver of DRIVERS) {
  describe(`members signed in through identity providers, on ${driver}`, () => {
    let h: Harness;
    let a: { tenantId: string; apiKey: string };
    let b: { tenantId: string; apiKey: string };
    const used: string[] = [];
    before(async () => {
      h = await startHarness(driver, {
        env: idp.env([DEAD_ISSUER]),
      });
      a = await h.tenant('a');
      b = await h.tenant('b');
      for (const [email, role] of [['alice@example.com', 'member'], ['bob@example.com', 'viewer'], ['carol@example.com', 'member']]) {
        const res = await h.call('POST', `/v1/tenants/${a.tenantId}/members`, { key: a.apiKey, body: { email, role } });
        assert.equal(res.status, 201, res.text);
      }
      assert.equal((await h.call('PUT', `/v1/tenants/${a.tenantId}/collections/notes`, { key: a.apiKey, body: { indexes: [] } })).status, 201);
    });
    after(() => h.close());

    const call = async (method: string, path: string, token: string, body?: unknown) => {
      used.push(token);
      return h.call(method, path, { headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { body }) });
    };

    test('an OIDC user whose verified e-mail was invited claims the invitation and writes with its role', async () => {
      const token = await oidcToken({ sub: 'alice-oidc', email: 'alice@example.com', email_verified: true });
      const put = await call('PUT', `/v1/tenants/${a.tenantId}/collections/notes/records/n1`, token, { text: 'from alice' });
      assert.equal(put.status, 201, put.text);
      const again = await call('GET', `/v1/tenants/${a.tenantId}/collections/notes/records/n1`, await oidcToken({ sub: 'alice-oidc' }));
      assert.equal(again.status, 200, 'linked by issuer and subject, no e-mail needed any more');
      const members = await h.call('GET', `/v1/tenants/${a.tenantId}/members`, { key: a.apiKey });
      assert.equal(members.json.members.find((m: { email: string }) => m.email === 'alice@example.com').status, 'active');
    });

    test('a Firebase user reads with a viewer role and cannot write', async () => {
      const token = await firebaseToken({ sub: 'bob-firebase-uid', email: 'bob@example.com', email_verified: true });
      assert.equal((await call('GET', `/v1/tenants/${a.tenantId}/collections/notes/records/n1`, token)).status, 200);
      const put = await call('PUT', `/v1/tenants/${a.tenantId}/collections/notes/records/n2`, token, { text: 'x' });
      assert.equal(put.status, 403);
    });

    test('an unverified e-mail claims nothing; the verified one does', async () => {
      const unverified = await oidcToken({ sub: 'carol', email: 'carol@example.com', email_verified: false });
      assert.equal((await call('GET', `/v1/tenants/${a.tenantId}`, unverified)).status, 404);
      const verified = await oidcToken({ sub: 'carol', email: 'carol@example.com', email_verified: true });
      assert.equal((await call('GET', `/v1/tenants/${a.tenantId}`, verified)).status, 200);
    });

    test("a member of one tenant gets 404 on another's, and strangers too", async () => {
      const alice = await oidcToken({ sub: 'alice-oidc' });
      assert.equal((await call('GET', `/v1/tenants/${b.tenantId}/collections/notes/records/n1`, alice)).status, 404);
      const stranger = await oidcToken({ sub: 'mallory', email: 'mallory@example.com', email_verified: true });
      assert.equal((await call('GET', `/v1/tenants/${a.tenantId}`, stranger)).status, 404);
    });

    test('bad tokens get 401: wrong audience, wrong project, expired, unknown issuer, garbage', async () => {
      for (const token of [
        await oidcToken({ sub: 'alice-oidc', aud: 'another-api' }),
        await firebaseToken({ sub: 'bob-firebase-uid', aud: 'another-project', iss: 'https://securetoken.google.com/another-project' }),
        await oidcToken({ sub: 'alice-oidc', exp: Math.floor(Date.now() / 1000) - 3600 }),
        await oidcToken({ sub: 'alice-oidc', iss: 'https://evil.example/realms/test' }),
        'not-a-token',
      ]) {
        const res = await call('GET', `/v1/tenants/${a.tenantId}`, token);
        assert.equal(res.status, 401, res.text);
        assert.equal(res.json.error.code, 'unauthenticated');
      }
    });

    test("the tenant's audit log names the member for each claim, read and write", async () => {
      const res = await h.call('GET', `/v1/tenants/${a.tenantId}/audit?limit=500`, { key: a.apiKey });
      const events = res.json.events as { action: string; actor: string }[];
      const claims = events.filter((e) => e.action === 'member.claim');
      assert.equal(claims.length, 3);
      assert.ok(claims.every((e) => /^member:m_[a-z2-7]{16}$/.test(e.actor)));
      assert.ok(events.some((e) => e.action === 'record.put' && e.actor === claims[0]!.actor));
    });

    test('a tenant that requires MFA refuses members without a second factor, with a code that says so', async () => {
      const policy = await h.call('PATCH', `/v1/tenants/${a.tenantId}`, { key: a.apiKey, body: { requireMfa: true } });
      assert.equal(policy.status, 200, policy.text);
      assert.equal(policy.json.requireMfa, true);
      try {
        const passwordOnly = await call('GET', `/v1/tenants/${a.tenantId}`, await oidcToken({ sub: 'alice-oidc', amr: ['pwd'] }));
        assert.equal(passwordOnly.status, 403);
        assert.equal(passwordOnly.json.error.code, 'mfa_required');
        assert.equal((await call('GET', `/v1/tenants/${a.tenantId}`, await oidcToken({ sub: 'alice-oidc', amr: ['pwd', 'otp'] }))).status, 200);
        const firebaseMfa = await firebaseToken({ sub: 'bob-firebase-uid', firebase: { sign_in_provider: 'password', sign_in_second_factor: 'phone' } });
        assert.equal((await call('GET', `/v1/tenants/${a.tenantId}`, firebaseMfa)).status, 200);
        const firebasePassword = await firebaseToken({ sub: 'bob-firebase-uid', firebase: { sign_in_provider: 'password' } });
        assert.equal((await call('GET', `/v1/tenants/${a.tenantId}`, firebasePassword)).status, 403);
        const stranger = await oidcToken({ sub: 'mallory', amr: ['pwd'] });
        assert.equal((await call('GET', `/v1/tenants/${a.tenantId}`, stranger)).status, 404, 'strangers learn nothing of the policy');
        assert.equal((await h.call('GET', `/v1/tenants/${a.tenantId}`, { key: a.apiKey })).status, 200, 'API keys are machine credentials');
      } finally {
        await h.call('PATCH', `/v1/tenants/${a.tenantId}`, { key: a.apiKey, body: { requireMfa: false } });
      }
    });

    test('members cannot change the policy; admins can', async () => {
      const alice = await oidcToken({ sub: 'alice-oidc' });
      assert.equal((await call('PATCH', `/v1/tenants/${a.tenantId}`, alice, { requireMfa: true })).status, 403);
      assert.equal((await h.call('PATCH', `/v1/tenants/${a.tenantId}`, { key: a.apiKey, body: { requireMfa: 'yes' } })).status, 400);
    });

    test('an identity provider that cannot be reached gives 503, not 401: the token may be fine', async () => {
      const res = await call('GET', `/v1/tenants/${a.tenantId}`, await oidcToken({ sub: 'alice-oidc', iss: DEAD_ISSUER }));
      assert.equal(res.status, 503, res.text);
      assert.equal(res.json.error.code, 'unavailable');
    });

    test('no token reaches a log line', () => {
      for (const token of used) {
        const signature = token.split('.')[2] ?? token;
        assert.ok(!h.logs.lines.some((line) => line.includes(signature)), 'token found in logs');
      }
    });
  });
}
