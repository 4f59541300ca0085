// The token attack suite through the HTTPS API: each forged or broken Firebase ID token gets 401
// with the generic message, and the tenant's audit log records the attempt with the reason.
// (test/identity/firebase-token.test.ts covers the verifier itself, case by case.)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generateKeyPair, SignJWT } from 'jose';
import { createSigningKey, signToken } from '../identity/google-certs-server.js';
import { PROJECT, startIdentityProviders, type IdentityProviders } from '../support/identity-providers.js';
import { startHarness, type Harness } from '../support/strongroom.js';

let idp: IdentityProviders;
let h: Harness;
let t: { tenantId: string; apiKey: string };

before(async () => {
  idp = await startIdentityProviders();
  h = await startHarness('sqlite', { env: idp.env() });
  t = await h.tenant('attacked');
  const invited = await h.call('POST', `/v1/tenants/${t.tenantId}/members`, { key: t.apiKey, body: { email: 'alice@example.com', role: 'owner' } });
  assert.equal(invited.status, 201, invited.text);
});
after(async () => {
  await h.close();
  await idp.close();
});

const now = () => Math.floor(Date.now() / 1000);
const claims = (extra: Record<string, unknown> = {}) => ({
  iss: idp.firebaseIssuer,
  aud: PROJECT,
  sub: 'uid-alice',
  email: 'alice@example.com',
  email_verified: true,
  iat: now() - 5,
  auth_time: now() - 60,
  exp: now() + 300,
  ...extra,
});
const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

test('every attack token gets 401 and an auth.failed event with its reason in the tenant audit log', async () => {
  const key = idp.firebaseKey;
  const attacks: [string, string, () => Promise<string> | string][] = [
    ['alg none outside emulator mode', 'bad_alg', () => `${b64url({ alg: 'none', kid: key.kid })}.${b64url(claims())}.`],
    ['HS256 signed with the public certificate', 'bad_alg', () => new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: key.kid }).sign(new TextEncoder().encode(key.certPem))],
    ['ES256 under the published kid', 'bad_alg', async () => new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: key.kid }).sign((await generateKeyPair('ES256')).privateKey)],
    ['wrong aud', 'bad_audience', () => signToken(key, claims({ aud: 'another-app' }))],
    ['wrong iss (an issuer nobody configured)', 'unknown_issuer', () => signToken(key, claims({ iss: 'https://securetoken.google.com/another-project' }))],
    ['another project', 'bad_audience', () => signToken(key, claims({ aud: 'another-project' }))],
    ['expired', 'expired', () => signToken(key, claims({ iat: now() - 7200, auth_time: now() - 7200, exp: now() - 3600 }))],
    ['iat in the future', 'iat_in_future', () => signToken(key, claims({ iat: now() + 600 }))],
    ['auth_time in the future', 'auth_time_in_future', () => signToken(key, claims({ auth_time: now() + 600 }))],
    ['unknown kid', 'unknown_kid', async () => signToken(await createSigningKey(), claims())],
    ['empty sub', 'bad_subject', () => signToken(key, claims({ sub: '' }))],
    ['truncated signature', 'bad_signature', async () => (await signToken(key, claims())).slice(0, -12)],
  ];
  const before = await auditFailures();
  for (const [name, , make] of attacks) {
    const res = await h.call('GET', `/v1/tenants/${t.tenantId}`, { key: await make() });
    assert.equal(res.status, 401, `${name}: ${res.text}`);
    assert.equal(res.json.error.message, 'valid credentials are required', `${name}: one generic message`);
  }
  const reasons = (await auditFailures()).slice(before.length);
  assert.deepEqual(reasons, attacks.map(([, reason]) => reason));
  const members = await h.call('GET', `/v1/tenants/${t.tenantId}/members`, { key: t.apiKey });
  assert.equal(members.json.members[0].status, 'invited', 'no attack claimed the invitation');
});

test('a 10 MB token is refused before it is read (431), and the server stays up', async () => {
  const huge = `${await signToken(idp.firebaseKey, claims())}${'A'.repeat(10 * 1024 * 1024)}`;
  const res = await h.call('GET', `/v1/tenants/${t.tenantId}`, { key: huge }).catch((error: Error) => ({ status: 0, text: error.message }));
  assert.ok([0, 431].includes(res.status), `${res.status} ${res.text.slice(0, 100)}`);
  const ok = await h.call('GET', `/v1/tenants/${t.tenantId}`, { key: await signToken(idp.firebaseKey, claims()) });
  assert.equal(ok.status, 200, ok.text);
});

async function auditFailures(): Promise<string[]> {
  const res = await h.call('GET', `/v1/tenants/${t.tenantId}/audit?limit=1000`, { key: t.apiKey });
  assert.equal(res.status, 200, res.text);
  return (res.json.events as { action: string; target: string }[]).filter((e) => e.action === 'auth.failed').map((e) => e.target.split(' reason:')[1]!);
}
