import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startFirebaseEmulator, type FirebaseEmulator } from '../support/firebase-emulator.js';
import { startHarness, type Harness } from '../support/strongroom.js';

// End to end with the real Firebase Auth emulator: users sign up and sign in through its
// REST API, and Strongroom (in emulator mode) accepts the unsigned ID tokens it issues.

const PROJECT = 'demo-strongroom';
const PASSWORD = 'correct horse battery staple';

let emu: FirebaseEmulator;
/** Strongroom in emulator mode. */
let h: Harness;
/** Strongroom with the same project but no emulator host: the production verification path. */
let production: Harness;
/** Strongroom in emulator mode that also asks the emulator about revoked sessions, on a clock the test moves. */
let revoking: Harness;
let offset = 0;
let tenant: { tenantId: string; apiKey: string };
/** Every ID token the emulator issued, for the log check. */
const issued: string[] = [];

before(async () => {
  [emu, production] = await Promise.all([
    startFirebaseEmulator({ projectId: PROJECT }),
    startHarness('sqlite', { env: { STRONGROOM_AUTH__FIREBASE__PROJECT_ID: PROJECT } }),
  ]);
  h = await startHarness('sqlite', {
    env: {
      STRONGROOM_AUTH__FIREBASE__PROJECT_ID: PROJECT,
      STRONGROOM_AUTH__FIREBASE__EMULATOR_HOST: emu.host,
      STRONGROOM_OPERATORS__IDENTITIES: JSON.stringify([{ issuer: `https://securetoken.google.com/${PROJECT}`, emailDomain: 'ops.example', roles: ['sre'] }]),
    },
  });
  revoking = await startHarness('sqlite', {
    now: () => Date.now() + offset,
    env: { STRONGROOM_AUTH__FIREBASE__PROJECT_ID: PROJECT, STRONGROOM_AUTH__FIREBASE__EMULATOR_HOST: emu.host, STRONGROOM_AUTH__FIREBASE__CHECK_REVOKED: 'true' },
  });
  tenant = await h.tenant('acme');
  const collection = await h.call('PUT', `/v1/tenants/${tenant.tenantId}/collections/notes`, { key: tenant.apiKey, body: { indexes: [] } });
  assert.equal(collection.status, 201, collection.text);
});
after(async () => {
  await h?.close();
  await production?.close();
  await revoking?.close();
  await emu?.stop();
});

async function invite(server: Harness, to: { tenantId: string; apiKey: string }, email: string): Promise<string> {
  const res = await server.call('POST', `/v1/tenants/${to.tenantId}/members`, { key: to.apiKey, body: { email, role: 'member' } });
  assert.equal(res.status, 201, res.text);
  return res.json.memberId as string;
}

/** Signs up in the emulator, verifies the e-mail there, and signs in again for a token that says so. */
async function verifiedUser(email: string): Promise<{ localId: string; idToken: string }> {
  const { localId, idToken: unverified } = await emu.signUp(email, PASSWORD);
  issued.push(unverified);
  await emu.verifyEmail(localId);
  const { idToken } = await emu.signIn(email, PASSWORD);
  issued.push(idToken);
  return { localId, idToken };
}

function claimsOf(idToken: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [header, payload] = idToken.split('.').map((part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8') || '{}'));
  return { header, payload };
}

test('a member invited by e-mail who signs up and verifies the e-mail in the emulator writes and reads its tenant\'s records', async () => {
  const memberId = await invite(h, tenant, 'alice@example.com');
  const { localId, idToken } = await verifiedUser('alice@example.com');
  const { header, payload } = claimsOf(idToken);
  assert.equal(header.alg, 'none', 'an unsigned emulator token, not one this test made');
  assert.equal(payload.sub, localId);
  assert.equal(payload.email_verified, true);

  const record = `/v1/tenants/${tenant.tenantId}/collections/notes/records/n1`;
  const put = await h.call('PUT', record, { key: idToken, body: { text: 'from alice' } });
  assert.equal(put.status, 201, put.text);
  const get = await h.call('GET', record, { key: idToken });
  assert.equal(get.status, 200, get.text);
  assert.deepEqual(get.json.data, { text: 'from alice' });

  const audit = await h.call('GET', `/v1/tenants/${tenant.tenantId}/audit?limit=500`, { key: tenant.apiKey });
  assert.equal(audit.status, 200, audit.text);
  const events = audit.json.events as { action: string; actor: string }[];
  const actor = `member:${memberId}`;
  assert.ok(events.some((e) => e.action === 'member.claim' && e.actor === actor), 'the claim is audited');
  assert.ok(events.some((e) => e.action === 'record.put' && e.actor === actor), 'the write is audited as the member');
});

test('a user whose e-mail the emulator has not verified cannot claim the invitation: 404, and it stays open', async () => {
  await invite(h, tenant, 'bob@example.com');
  const { idToken } = await emu.signUp('bob@example.com', PASSWORD);
  issued.push(idToken);
  assert.equal(claimsOf(idToken).payload.email_verified, false);

  const res = await h.call('GET', `/v1/tenants/${tenant.tenantId}/collections/notes/records/n1`, { key: idToken });
  assert.equal(res.status, 404, res.text);
  const members = await h.call('GET', `/v1/tenants/${tenant.tenantId}/members`, { key: tenant.apiKey });
  assert.equal(members.json.members.find((m: { email: string }) => m.email === 'bob@example.com').status, 'invited');
});

test('an emulator token is refused with 401 where no emulator host is configured (unsigned tokens are not accepted)', async () => {
  const elsewhere = await production.tenant('acme');
  // Invited there too, so that acceptance would show as a 200, not as a stranger's 404.
  await invite(production, elsewhere, 'carol@example.com');
  const { idToken } = await verifiedUser('carol@example.com');

  const res = await production.call('GET', `/v1/tenants/${elsewhere.tenantId}`, { key: idToken });
  assert.equal(res.status, 401, res.text);
  assert.equal(res.json.error.code, 'unauthenticated');
  const members = await production.call('GET', `/v1/tenants/${elsewhere.tenantId}/members`, { key: elsewhere.apiKey });
  assert.equal(members.json.members[0].status, 'invited');
});

test('in a tenant that requires MFA, the password token is refused with mfa_required and the SMS second factor opens it', async () => {
  const strict = await h.tenant('strict');
  const policy = await h.call('PATCH', `/v1/tenants/${strict.tenantId}`, { key: strict.apiKey, body: { requireMfa: true } });
  assert.equal(policy.status, 200, policy.text);
  await invite(h, strict, 'dave@example.com');
  const { localId, idToken: passwordOnly } = await verifiedUser('dave@example.com');

  const refused = await h.call('GET', `/v1/tenants/${strict.tenantId}`, { key: passwordOnly });
  assert.equal(refused.status, 403, refused.text);
  assert.equal(refused.json.error.code, 'mfa_required');

  await emu.enrollPhoneSecondFactor(localId, '+15555550123');
  const { idToken } = await emu.signInWithMfa('dave@example.com', PASSWORD);
  issued.push(idToken);
  assert.equal((claimsOf(idToken).payload.firebase as { sign_in_second_factor?: string }).sign_in_second_factor, 'phone');
  const opened = await h.call('GET', `/v1/tenants/${strict.tenantId}`, { key: idToken });
  assert.equal(opened.status, 200, opened.text);
});

test('an operator (by verified e-mail domain) is refused without a second factor and let in with one, yet reads no records', async () => {
  const { localId, idToken: passwordOnly } = await verifiedUser('erin@ops.example');
  const refused = await h.call('GET', '/v1/ops/tenants', { key: passwordOnly });
  assert.equal(refused.status, 403, refused.text);
  assert.equal(refused.json.error.code, 'mfa_required');

  await emu.enrollPhoneSecondFactor(localId, '+15555550199');
  const { idToken } = await emu.signInWithMfa('erin@ops.example', PASSWORD);
  issued.push(idToken);
  const tenants = await h.call('GET', '/v1/ops/tenants', { key: idToken });
  assert.equal(tenants.status, 200, tenants.text);
  assert.ok(tenants.json.tenants.some((t: { tenantId: string }) => t.tenantId === tenant.tenantId));
  const record = await h.call('GET', `/v1/tenants/${tenant.tenantId}/collections/notes/records/n1`, { key: idToken });
  assert.equal(record.status, 403, 'no grant, no records');
});

test('with checkRevoked, a disabled, signed-out-everywhere or deleted user is refused once the 30 s cache ends', async () => {
  const t = await revoking.tenant('revocation');
  const cases: [string, (localId: string, authTime: number) => Promise<void>][] = [
    ['user_disabled', (localId) => emu.updateAccount(localId, { disableUser: true })],
    ['revoked', (localId, authTime) => emu.updateAccount(localId, { validSince: String(authTime + 1) })],
    ['user_not_found', (localId) => emu.deleteAccount(localId)],
  ];
  for (const [reason, revoke] of cases) {
    const email = `${reason.replace(/_/g, '-')}@example.com`;
    await invite(revoking, t, email);
    const { localId, idToken } = await verifiedUser(email);
    assert.equal((await revoking.call('GET', `/v1/tenants/${t.tenantId}`, { key: idToken })).status, 200, reason);
    await revoke(localId, claimsOf(idToken).payload.auth_time as number);
    offset += 31_000;
    const refused = await revoking.call('GET', `/v1/tenants/${t.tenantId}`, { key: idToken });
    assert.equal(refused.status, 401, `${reason}: ${refused.text}`);
  }
  const audit = await revoking.call('GET', `/v1/tenants/${t.tenantId}/audit?limit=500`, { key: t.apiKey });
  const reasons = (audit.json.events as { action: string; target: string }[]).filter((e) => e.action === 'auth.failed').map((e) => e.target.split('reason:')[1]);
  assert.deepEqual(reasons, ['user_disabled', 'revoked', 'user_not_found']);
});

test('no emulator ID token reaches a log line', () => {
  assert.ok(issued.length >= 6);
  const lines = [...h.logs.lines, ...production.logs.lines];
  assert.ok(lines.length > 0);
  for (const token of issued) {
    // The payload is what identifies a token: unsigned ones have no signature, and every header is alike.
    const payload = token.split('.')[1]!;
    assert.ok(!lines.some((line) => line.includes(payload)), 'an ID token was logged');
  }
});
