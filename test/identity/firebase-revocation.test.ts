import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { exportPKCS8, generateKeyPair, jwtVerify, type CryptoKey } from 'jose';
import { ConfigError, UnavailableError } from '../../src/errors.js';
import { createRevocationChecker, RevokedTokenError } from '../../src/identity/firebase-revocation.js';
import { loadConfig } from '../../src/config/load.js';
import { createLocalPki, trustingFetch, type LocalPki } from './oidc-issuer-fixture.js';

// The production path of the revocation check: a service account signs a JWT assertion, trades it
// for an access token at its token_uri, and looks the user up in the Identity Toolkit. Both Google
// endpoints are played by one local HTTPS server that checks what it is sent.

const PROJECT = 'demo-revocation';
const CLIENT_EMAIL = 'strongroom@demo-revocation.iam.gserviceaccount.com';

let pki: LocalPki;
let server: Server;
let base: string;
let publicKey: CryptoKey;
let dir: string;
let accountFile: string;
const users = new Map<string, { disabled?: boolean; validSince?: string }>();
const seen = { tokens: 0, lookups: 0 };
let refuseTokens = false;
const cleanups: (() => unknown)[] = [];
const fileContext = { after: (fn: () => unknown) => cleanups.push(fn) } as unknown as Parameters<typeof trustingFetch>[0];

async function readBody(req: import('node:http').IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body;
}

before(async () => {
  pki = await createLocalPki();
  const keys = await generateKeyPair('RS256', { extractable: true });
  publicKey = keys.publicKey;
  server = createServer({ cert: pki.certPem, key: pki.keyPem }, async (req, res) => {
    const body = await readBody(req);
    const send = (status: number, json: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(json));
    };
    if (req.method === 'POST' && req.url === '/token') {
      const form = new URLSearchParams(body);
      const grant = await jwtVerify(form.get('assertion') ?? '', publicKey, { issuer: CLIENT_EMAIL, audience: `${base}/token`, algorithms: ['RS256'] }).catch(() => null);
      const valid = form.get('grant_type') === 'urn:ietf:params:oauth:grant-type:jwt-bearer' && grant?.payload.scope === 'https://www.googleapis.com/auth/identitytoolkit';
      if (!valid || refuseTokens) return send(400, { error: 'invalid_grant' });
      seen.tokens += 1;
      return send(200, { access_token: `access-${seen.tokens}`, expires_in: 3600, token_type: 'Bearer' });
    }
    if (req.method === 'POST' && req.url === `/v1/projects/${PROJECT}/accounts:lookup`) {
      if (req.headers.authorization !== `Bearer access-${seen.tokens}`) return send(401, { error: { message: 'bad token' } });
      seen.lookups += 1;
      const { localId } = JSON.parse(body) as { localId: string[] };
      const user = users.get(localId[0]!);
      return send(200, user ? { users: [{ localId: localId[0], ...user }] } : {});
    }
    send(404, {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `https://localhost:${(server.address() as { port: number }).port}`;
  dir = mkdtempSync(join(tmpdir(), 'strongroom-sa-'));
  accountFile = join(dir, 'service-account.json');
  writeFileSync(accountFile, JSON.stringify({ type: 'service_account', client_email: CLIENT_EMAIL, private_key: await exportPKCS8(keys.privateKey), token_uri: `${base}/token` }), { mode: 0o600 });
});
after(async () => {
  await new Promise((resolve) => server.close(resolve));
  for (const fn of cleanups.reverse()) await fn();
  rmSync(dir, { recursive: true, force: true });
  await pki.remove();
});

function checker(now: () => number) {
  return createRevocationChecker({
    projectId: PROJECT,
    emulatorHost: null,
    serviceAccountFile: accountFile,
    identityToolkitUrl: base,
    fetch: trustingFetch(fileContext, pki).fetch,
    now,
  });
}

const reasonOf = (reason: string) => (error: unknown) => error instanceof RevokedTokenError && error.reason === reason;

test('an active user passes; answers are cached for 30 s and the access token is reused', async () => {
  users.set('alice', { validSince: '1000' });
  let clock = Date.now();
  const check = checker(() => clock);
  const before = { ...seen };
  await check.check('alice', 1000);
  await check.check('alice', 1500);
  assert.equal(seen.lookups - before.lookups, 1, 'the second check is answered from the cache');
  clock += 31_000;
  await check.check('alice', 1500);
  assert.equal(seen.lookups - before.lookups, 2);
  assert.equal(seen.tokens - before.tokens, 1, 'one access token for both lookups');
});

test('disabled, revoked since the sign-in, and unknown users are refused, each with its reason', async () => {
  users.set('bob', { disabled: true });
  users.set('carol', { validSince: '5000' });
  const check = checker(Date.now);
  await assert.rejects(check.check('bob', 6000), reasonOf('user_disabled'));
  await assert.rejects(check.check('carol', 4999), reasonOf('revoked'));
  await check.check('carol', 5000);
  await assert.rejects(check.check('nobody', 6000), reasonOf('user_not_found'));
});

test('when Google cannot be asked, the check fails closed with 503, not as a bad token', async () => {
  refuseTokens = true;
  try {
    await assert.rejects(checker(Date.now).check('alice', 1000), UnavailableError);
  } finally {
    refuseTokens = false;
  }
  const down = createRevocationChecker({ projectId: PROJECT, emulatorHost: null, serviceAccountFile: accountFile, identityToolkitUrl: 'https://localhost:1', fetch: trustingFetch(fileContext, pki).fetch });
  await assert.rejects(down.check('alice', 1000), UnavailableError);
});

test('a service account file that is not one stops start-up, naming the key; so does checkRevoked without one', () => {
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{"client_email":"x"}');
  assert.throws(() => createRevocationChecker({ projectId: PROJECT, emulatorHost: null, serviceAccountFile: bad, identityToolkitUrl: base }), (e: unknown) => e instanceof ConfigError && /serviceAccountFile/.test(e.message));
  assert.throws(
    () => loadConfig({ env: { STRONGROOM_AUTH__FIREBASE__PROJECT_ID: PROJECT, STRONGROOM_AUTH__FIREBASE__CHECK_REVOKED: 'true' } }),
    /auth\.firebase\.serviceAccountFile: is required to check for revoked tokens/,
  );
});
