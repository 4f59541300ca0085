import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test, type TestContext } from 'node:test';
import { SignJWT, UnsecuredJWT, exportSPKI, type JWTPayload } from 'jose';
import { ConfigError, UnauthenticatedError } from '../../src/errors.js';
import {
  createOidcVerifier,
  type OidcIssuerConfig,
  type OidcRejectionReason,
  type OidcVerifier,
  type OidcVerifierOptions,
} from '../../src/identity/oidc-token.js';
import {
  allIssuerRequests,
  createLocalPki,
  signToken,
  startTestIssuer,
  trustingFetch,
  type LocalPki,
  type SigningKey,
  type TestIssuer,
} from './oidc-issuer-fixture.js';

const NOW_MS = Date.parse('2026-12-01T12:00:00Z');
const NOW_S = NOW_MS / 1000;
const AUDIENCE = 'strongroom-api';
const SKEW_S = 60;

let pki: LocalPki;
before(async () => {
  pki = await createLocalPki();
});
after(() => pki.remove());

interface Harness {
  idp: TestIssuer;
  verifier: OidcVerifier;
  /** URLs the verifier's fetch was asked for. */
  fetched: string[];
  clock: { ms: number };
}

async function harness(
  t: TestContext,
  issuer: Partial<OidcIssuerConfig> = {},
  options: Partial<OidcVerifierOptions> = {},
): Promise<Harness> {
  const idp = await startTestIssuer(t, pki);
  const { fetch, urls } = trustingFetch(t, pki);
  const clock = { ms: NOW_MS };
  const verifier = createOidcVerifier({
    issuers: [{ issuer: idp.issuer, audiences: [AUDIENCE], ...issuer }],
    clockSkewSeconds: SKEW_S,
    fetch,
    now: () => clock.ms,
    ...options,
  });
  return { idp, verifier, fetched: urls, clock };
}

function claims(idp: TestIssuer, overrides: JWTPayload = {}): JWTPayload {
  return { iss: idp.issuer, aud: AUDIENCE, sub: 'user-123', iat: NOW_S - 10, exp: NOW_S + 3600, ...overrides };
}

function signatureHash(token: string): string {
  return createHash('sha256').update(Buffer.from(token.split('.')[2]!, 'base64url')).digest('hex');
}

/** The verifier refuses `token` with an UnauthenticatedError carrying `reason` and nothing of the token. */
async function assertRefused(verifier: OidcVerifier, token: string, reason: OidcRejectionReason): Promise<void> {
  await assert.rejects(verifier.verify(token), (err: unknown) => {
    assert.ok(err instanceof UnauthenticatedError, `expected UnauthenticatedError, got ${String(err)}`);
    assert.equal((err as { reason?: unknown }).reason, reason);
    assert.equal(err.code, 'unauthenticated');
    assert.equal(err.message, 'valid credentials are required');
    assert.equal(err.cause, undefined, 'no jose error (which holds the claims) is attached');
    // Only strings long enough that finding them by chance is impossible.
    const secrets = [token, token.split('.')[2] ?? ''].filter((s) => s.length >= 16);
    for (const text of [JSON.stringify(err), String(err.stack)]) {
      for (const secret of secrets) assert.ok(!text.includes(secret), 'no part of the token appears in the error');
    }
    return true;
  });
}

describe('OIDC tokens from a configured issuer', () => {
  test('a valid RS256 token yields the issuer, subject, email and a hash of its signature', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');
    const token = await signToken(key, claims(idp, { email: 'ada@example.com', email_verified: true }));

    const who = await verifier.verify(token);

    assert.deepEqual(who, {
      issuer: idp.issuer,
      subject: 'user-123',
      email: 'ada@example.com',
      emailVerified: true,
      mfa: false,
      amr: [],
      tokenHash: signatureHash(token),
    });
    assert.match(who.tokenHash, /^[0-9a-f]{64}$/);
  });

  test('a valid ES256 token yields its identity', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('ES256');
    const token = await signToken(key, claims(idp, { sub: 'es-user' }));

    const who = await verifier.verify(token);

    assert.equal(who.subject, 'es-user');
    assert.equal(who.issuer, idp.issuer);
    assert.equal(who.email, null);
    assert.equal(who.emailVerified, false);
  });

  test('amr holding a second factor counts as MFA; a password alone, a missing or a malformed amr do not', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');
    const verifyAmr = async (amr: unknown) => verifier.verify(await signToken(key, claims(idp, amr === undefined ? {} : { amr })));

    assert.deepEqual(await verifyAmr(['pwd', 'otp']).then((w) => [w.mfa, w.amr]), [true, ['pwd', 'otp']]);
    assert.equal((await verifyAmr(['hwk'])).mfa, true);
    assert.deepEqual(await verifyAmr(['pwd']).then((w) => [w.mfa, w.amr]), [false, ['pwd']]);
    assert.equal((await verifyAmr(undefined)).mfa, false);
    assert.deepEqual(await verifyAmr('mfa').then((w) => [w.mfa, w.amr]), [false, []]);
    assert.deepEqual(await verifyAmr(['pwd', 7, { mfa: true }]).then((w) => [w.mfa, w.amr]), [false, ['pwd']]);
  });

  test('the amr values that count as a second factor are configurable per issuer', async (t) => {
    const { idp, verifier } = await harness(t, { mfaAmrValues: ['hwk'] });
    const key = await idp.addKey('RS256');

    assert.equal((await verifier.verify(await signToken(key, claims(idp, { amr: ['pwd', 'otp'] })))).mfa, false);
    assert.equal((await verifier.verify(await signToken(key, claims(idp, { amr: ['pwd', 'hwk'] })))).mfa, true);
  });

  test('an email counts as verified only when email_verified is the boolean true', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');
    const verified = async (extra: JWTPayload) => (await verifier.verify(await signToken(key, claims(idp, extra)))).emailVerified;

    assert.equal(await verified({ email: 'a@example.com', email_verified: true }), true);
    assert.equal(await verified({ email: 'a@example.com', email_verified: 'true' }), false);
    assert.equal(await verified({ email: 'a@example.com' }), false);
    assert.equal(await verified({ email_verified: true }), false);
  });

  test('an aud list holding one configured audience is accepted', async (t) => {
    const { idp, verifier } = await harness(t, { audiences: ['other-api', AUDIENCE] });
    const key = await idp.addKey('RS256');

    const who = await verifier.verify(await signToken(key, claims(idp, { aud: ['unrelated', AUDIENCE] })));

    assert.equal(who.subject, 'user-123');
  });

  test('clock skew within the allowance is tolerated for exp and iat', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');

    await verifier.verify(await signToken(key, claims(idp, { iat: NOW_S - 3600, exp: NOW_S - (SKEW_S - 5) })));
    await verifier.verify(await signToken(key, claims(idp, { iat: NOW_S + (SKEW_S - 5) })));
  });

  test('discovery and the key set are fetched once and reused across tokens', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');

    for (const sub of ['a', 'b', 'c']) await verifier.verify(await signToken(key, claims(idp, { sub })));

    assert.deepEqual(idp.requests, ['/realms/test/.well-known/openid-configuration', idp.jwksPath]);
  });

  test('after key rotation a token signed by the new key (a new kid in the JWKS) verifies', async (t) => {
    const { idp, verifier } = await harness(t, {}, { jwksCooldownMs: 0 });
    const oldKey = await idp.addKey('RS256');
    await verifier.verify(await signToken(oldKey, claims(idp)));

    const newKey = await idp.addKey('RS256');
    idp.jwks.keys = idp.jwks.keys.filter((jwk) => jwk.kid !== oldKey.kid);
    const who = await verifier.verify(await signToken(newKey, claims(idp, { sub: 'after-rotation' })));

    assert.equal(who.subject, 'after-rotation');
    assert.equal(idp.requests.filter((p) => p === idp.jwksPath).length, 2, 'the unknown kid triggered one refetch');
    await assertRefused(verifier, await signToken(oldKey, claims(idp)), 'unknown_kid');
  });

  test('issuerOf names the configured issuer a token claims, and null for anything else', async (t) => {
    const { idp, verifier, fetched } = await harness(t);
    const key = await idp.addKey('RS256');

    assert.equal(verifier.issuerOf(await signToken(key, claims(idp))), idp.issuer);
    assert.equal(verifier.issuerOf(await signToken(key, claims(idp, { iss: 'https://evil.example' }))), null);
    assert.equal(verifier.issuerOf('not a jwt'), null);
    assert.equal(verifier.issuerOf('x'.repeat(10 * 1024 * 1024)), null);
    assert.deepEqual(fetched, [], 'peeking never touches the network');
  });
});

describe('OIDC attack suite: each token is refused with an audit reason', () => {
  test('an unknown issuer is refused before any request is made, whatever it serves', async (t) => {
    const { idp, verifier, fetched } = await harness(t);
    const attacker = await startTestIssuer(t, pki, 'evil');
    const attackerKey = await attacker.addKey('RS256');
    const key = await idp.addKey('RS256');
    const requestsBefore = allIssuerRequests.length;

    const lookalikes = [
      attacker.issuer,
      `${idp.issuer}/`,
      idp.issuer.replace('localhost', '127.0.0.1'),
      idp.issuer.toUpperCase(),
      `${idp.issuer}/../evil`,
      'http://169.254.169.254/latest/meta-data',
    ];
    for (const iss of lookalikes) {
      await assertRefused(verifier, await signToken(attackerKey, claims(idp, { iss })), 'unknown_issuer');
      await assertRefused(verifier, await signToken(key, claims(idp, { iss })), 'unknown_issuer');
    }
    await assertRefused(verifier, await signToken(key, claims(idp, { iss: undefined })), 'unknown_issuer');

    assert.deepEqual(fetched, [], 'the verifier fetched nothing');
    assert.equal(allIssuerRequests.length, requestsBefore, 'no request reached any server');
  });

  test('a discovery document naming another issuer is refused and its keys are never fetched', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');
    idp.discovery.issuer = `${idp.origin}/realms/other`;

    await assertRefused(verifier, await signToken(key, claims(idp)), 'discovery_failed');
    assert.deepEqual(idp.requests, ['/realms/test/.well-known/openid-configuration']);
  });

  test('an http:// jwks_uri is refused without being fetched', async (t) => {
    const { idp, verifier, fetched } = await harness(t);
    const key = await idp.addKey('RS256');
    idp.discovery.jwks_uri = `http://localhost:1${idp.jwksPath}`;

    await assertRefused(verifier, await signToken(key, claims(idp)), 'discovery_failed');
    assert.ok(fetched.every((url) => url.startsWith('https://')), `fetched only https: ${fetched.join(', ')}`);
    assert.equal(fetched.length, 1);
  });

  test('a redirected discovery request is not followed', async (t) => {
    const { idp, verifier, fetched } = await harness(t);
    const key = await idp.addKey('RS256');
    idp.discoveryResponse = { status: 302, headers: { location: 'https://attacker.example/.well-known/openid-configuration' } };

    await assertRefused(verifier, await signToken(key, claims(idp)), 'discovery_failed');
    assert.equal(fetched.length, 1);
  });

  test('a failed discovery is not retried for 30 s, however many tokens arrive', async (t) => {
    const { idp, verifier, clock } = await harness(t);
    const key = await idp.addKey('RS256');
    const token = await signToken(key, claims(idp));
    idp.discoveryResponse = { status: 500 };

    await assertRefused(verifier, token, 'discovery_failed');
    await assertRefused(verifier, token, 'discovery_failed');
    assert.equal(idp.requests.length, 1);

    idp.discoveryResponse = undefined;
    clock.ms += 31_000;
    await verifier.verify(await signToken(key, claims(idp, { iat: clock.ms / 1000 })));
    assert.equal(idp.requests.filter((p) => p.endsWith('/openid-configuration')).length, 2);
  });

  test('an issuer configured with http:// or with symmetric or no-signature algorithms is a configuration error', () => {
    const make = (issuer: Partial<OidcIssuerConfig>) => () =>
      createOidcVerifier({
        issuers: [{ issuer: 'https://idp.example', audiences: [AUDIENCE], ...issuer }],
        clockSkewSeconds: SKEW_S,
      });

    assert.throws(make({ issuer: 'http://idp.example' }), ConfigError);
    assert.throws(make({ algorithms: ['HS256'] }), ConfigError);
    assert.throws(make({ algorithms: ['none'] }), ConfigError);
    assert.throws(make({ algorithms: [] }), ConfigError);
    assert.throws(make({ audiences: [] }), ConfigError);
    assert.throws(make({ issuer: 'https://idp.example/?tenant=1' }), ConfigError);
    assert.doesNotThrow(make({}));
  });

  test('alg none is refused', async (t) => {
    const { idp, verifier, fetched } = await harness(t);
    await idp.addKey('RS256');

    await assertRefused(verifier, new UnsecuredJWT(claims(idp)).encode(), 'bad_alg');
    assert.deepEqual(fetched, []);
  });

  test('HS256 signed with the issuer public key as the secret is refused', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');
    const publicPem = new TextEncoder().encode(await exportSPKI(key.publicKey));
    const publicJwkJson = new TextEncoder().encode(JSON.stringify(key.publicJwk));

    for (const secret of [publicPem, publicJwkJson]) {
      const token = await new SignJWT(claims(idp)).setProtectedHeader({ alg: 'HS256', kid: key.kid }).sign(secret);
      await assertRefused(verifier, token, 'bad_alg');
    }
  });

  test('an algorithm outside the issuer allow-list is refused even with a published key', async (t) => {
    const { idp, verifier, fetched } = await harness(t, { algorithms: ['RS256'] });
    const key = await idp.addKey('ES256');

    await assertRefused(verifier, await signToken(key, claims(idp)), 'bad_alg');
    assert.deepEqual(fetched, []);
  });

  test('a token for another audience is refused', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');

    await assertRefused(verifier, await signToken(key, claims(idp, { aud: 'another-client' })), 'bad_audience');
    await assertRefused(verifier, await signToken(key, claims(idp, { aud: ['a', 'b'] })), 'bad_audience');
    await assertRefused(verifier, await signToken(key, claims(idp, { aud: undefined })), 'missing_claim');
  });

  test('an expired token is refused once past the skew allowance', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');

    await assertRefused(verifier, await signToken(key, claims(idp, { iat: NOW_S - 7200, exp: NOW_S - SKEW_S - 1 })), 'expired');
  });

  test('a token that expires later is refused once the clock passes its exp', async (t) => {
    const { idp, verifier, clock } = await harness(t);
    const key = await idp.addKey('RS256');
    const token = await signToken(key, claims(idp, { exp: NOW_S + 600 }));
    await verifier.verify(token);

    clock.ms += (600 + SKEW_S + 1) * 1000;
    await assertRefused(verifier, token, 'expired');
  });

  test('a token issued in the future beyond the skew is refused', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');

    await assertRefused(verifier, await signToken(key, claims(idp, { iat: NOW_S + SKEW_S + 60 })), 'iat_in_future');
    await assertRefused(verifier, await signToken(key, claims(idp, { nbf: NOW_S + SKEW_S + 60 })), 'not_yet_valid');
  });

  test('an empty, overlong or missing sub, or a missing exp or iat, is refused', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');

    await assertRefused(verifier, await signToken(key, claims(idp, { sub: '' })), 'bad_subject');
    await assertRefused(verifier, await signToken(key, claims(idp, { sub: 'x'.repeat(256) })), 'bad_subject');
    assert.equal((await verifier.verify(await signToken(key, claims(idp, { sub: 'x'.repeat(255) })))).subject.length, 255);
    await assertRefused(verifier, await signToken(key, claims(idp, { sub: undefined })), 'missing_claim');
    await assertRefused(verifier, await signToken(key, claims(idp, { exp: undefined })), 'missing_claim');
    await assertRefused(verifier, await signToken(key, claims(idp, { iat: undefined })), 'missing_claim');
  });

  test('a truncated or altered signature is refused', async (t) => {
    const { idp, verifier } = await harness(t);
    const rsa = await idp.addKey('RS256');
    const ec = await idp.addKey('ES256');

    for (const key of [rsa, ec]) {
      const token = await signToken(key, claims(idp));
      const [header, payload, signature] = token.split('.') as [string, string, string];
      await assertRefused(verifier, `${header}.${payload}.${signature.slice(0, 40)}`, 'bad_signature');
      await assertRefused(verifier, `${header}.${payload}.`, 'bad_signature');
      const forged = await signToken(key, claims(idp, { sub: 'admin' }));
      await assertRefused(verifier, `${forged.split('.').slice(0, 2).join('.')}.${signature}`, 'bad_signature');
    }
  });

  test('a token signed by an unpublished key under a published kid is refused', async (t) => {
    const { idp, verifier } = await harness(t);
    const published = await idp.addKey('RS256');
    const impostor: SigningKey = { ...(await idp.addKey('RS256', { publish: false })), kid: published.kid };

    await assertRefused(verifier, await signToken(impostor, claims(idp)), 'bad_signature');
  });

  test('an unknown kid is refused, and refetching the key set waits for the cooldown', async (t) => {
    const { idp, verifier } = await harness(t);
    const key = await idp.addKey('RS256');
    await verifier.verify(await signToken(key, claims(idp)));
    const stranger = await idp.addKey('RS256', { publish: false });

    for (let i = 0; i < 5; i += 1) await assertRefused(verifier, await signToken(stranger, claims(idp)), 'unknown_kid');

    assert.equal(idp.requests.filter((p) => p === idp.jwksPath).length, 1);
  });

  test('a 10 MB token is refused before parsing or any request', async (t) => {
    const { idp, verifier, fetched } = await harness(t);
    const key = await idp.addKey('RS256');
    const real = await signToken(key, claims(idp));
    const [header, , signature] = real.split('.') as [string, string, string];
    const huge = `${header}.${Buffer.from(JSON.stringify(claims(idp, { pad: 'x'.repeat(10 * 1024 * 1024) }))).toString('base64url')}.${signature}`;

    await assertRefused(verifier, huge, 'too_large');
    assert.deepEqual(fetched, []);
  });

  test('garbage is refused as malformed', async (t) => {
    const { verifier, fetched } = await harness(t);

    for (const garbage of ['', 'a.b.c', 'not-a-jwt', 'e30.e30.e30.e30.e30', '..']) {
      await assertRefused(verifier, garbage, 'malformed');
    }
    assert.deepEqual(fetched, []);
  });
});
