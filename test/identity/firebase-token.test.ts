import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, test, type TestContext } from 'node:test';
import { CompactSign, SignJWT, generateKeyPair, type JWTPayload } from 'jose';
import { ConfigError, UnauthenticatedError } from '../../src/errors.js';
import {
  createFirebaseVerifier,
  FirebaseTokenError,
  type FirebaseTokenRejection,
  type FirebaseVerifier,
  type FirebaseVerifierOptions,
} from '../../src/identity/firebase-token.js';
import { createSigningKey, signToken, startCertsServer, type CertsServer, type SigningKey } from './google-certs-server.js';

const PROJECT = 'strongroom-test';
const ISSUER = `https://securetoken.google.com/${PROJECT}`;
const SKEW = 30;
/** Every test starts its injected clock here; tokens are minted relative to it. */
const T0_MS = Date.parse('2026-12-01T12:00:00Z');
const T0 = T0_MS / 1000;

/** The claims the Firebase Auth backend puts in an ID token for an email/password user. */
function claims(overrides: JWTPayload = {}): JWTPayload {
  return {
    iss: ISSUER,
    aud: PROJECT,
    auth_time: T0 - 600,
    user_id: 'uid-alice',
    sub: 'uid-alice',
    iat: T0 - 10,
    exp: T0 + 3600,
    email: 'alice@example.com',
    email_verified: true,
    firebase: { identities: { email: ['alice@example.com'] }, sign_in_provider: 'password' },
    ...overrides,
  };
}

const b64url = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** What the Firebase Auth emulator issues: `alg: none`, an empty signature. */
function unsignedToken(payload: JWTPayload, header: Record<string, unknown> = { alg: 'none', kid: 'fakekid', typ: 'JWT' }): string {
  return `${b64url(header)}.${b64url(payload)}.`;
}

interface Fixture {
  server: CertsServer;
  key: SigningKey;
  clock: { ms: number };
  /** Moves the injected clock forward. */
  advance(seconds: number): void;
  verifier: FirebaseVerifier;
  /** A verifier with other options, on the same server and clock. */
  verifierWith(options: Partial<FirebaseVerifierOptions>): FirebaseVerifier;
}

/** RSA key generation is the slow part of a fixture; the published key can be shared, each test gets its own server. */
let sharedKey: Promise<SigningKey> | undefined;

async function setup(t: TestContext, options: Partial<FirebaseVerifierOptions> = {}): Promise<Fixture> {
  sharedKey ??= createSigningKey();
  const key = await sharedKey;
  const server = await startCertsServer(t, { keys: [key], maxAge: 3600 });
  const clock = { ms: T0_MS };
  const verifierWith = (extra: Partial<FirebaseVerifierOptions>) =>
    createFirebaseVerifier({
      projectId: PROJECT,
      certsUrl: server.url,
      clockSkewSeconds: SKEW,
      fetch: server.fetch,
      now: () => clock.ms,
      ...options,
      ...extra,
    });
  return {
    server,
    key,
    clock,
    advance: (seconds) => {
      clock.ms += seconds * 1000;
    },
    verifier: verifierWith({}),
    verifierWith,
  };
}

/** The verification fails with the generic 401 error, and `reason` says why. */
async function assertRefused(verification: Promise<unknown>, reason: FirebaseTokenRejection): Promise<FirebaseTokenError> {
  const err = await verification.then(
    () => assert.fail(`expected a refusal (${reason}), the token was accepted`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof UnauthenticatedError, `expected UnauthenticatedError, got ${inspect(err)}`);
  assert.ok(err instanceof FirebaseTokenError);
  assert.equal(err.code, 'unauthenticated');
  assert.equal(err.message, 'valid credentials are required');
  assert.equal(err.reason, reason);
  return err;
}

function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('Firebase ID tokens (production path, keys from an HTTPS endpoint)', () => {
  test('a valid token yields the identity its claims describe, and a hash of its signature', async (t) => {
    const f = await setup(t);
    const token = await signToken(
      f.key,
      claims({ firebase: { sign_in_provider: 'password', sign_in_second_factor: 'phone' } }),
    );

    const identity = await f.verifier.verify(token);

    assert.deepEqual(identity, {
      issuer: ISSUER,
      subject: 'uid-alice',
      email: 'alice@example.com',
      emailVerified: true,
      signInSecondFactor: 'phone',
      authTime: T0 - 600,
      tokenHash: sha256Hex(Buffer.from(token.split('.')[2]!, 'base64url')),
    });
    assert.equal(f.server.requests(), 1);
  });

  test('absent or ill-typed optional claims map to null and false, never to truthy values', async (t) => {
    const f = await setup(t);
    const token = await signToken(f.key, claims({ email: undefined, email_verified: 'true', firebase: 'x' }));

    const identity = await f.verifier.verify(token);

    assert.equal(identity.email, null);
    assert.equal(identity.emailVerified, false);
    assert.equal(identity.signInSecondFactor, null);
  });

  test('one signature spelled two ways (spare base64url bits) verifies to the same tokenHash', async (t) => {
    const f = await setup(t);
    const token = await signToken(f.key, claims());
    const [head, body, signature] = token.split('.') as [string, string, string];
    // 256 signature bytes take 342 characters; the last one carries 4 bits that decoders ignore.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(signature.at(-1)!);
    const respelled = `${head}.${body}.${signature.slice(0, -1)}${alphabet[last ^ 1]}`;
    assert.notEqual(respelled, token);

    const a = await f.verifier.verify(token);
    const b = await f.verifier.verify(respelled);

    assert.equal(a.tokenHash, b.tokenHash);
  });

  test('a sub of exactly 128 characters is accepted', async (t) => {
    const f = await setup(t);
    const identity = await f.verifier.verify(await signToken(f.key, claims({ sub: 'u'.repeat(128) })));
    assert.equal(identity.subject.length, 128);
  });

  test('tokens within the clock skew are accepted: exp just passed, iat and auth_time just ahead', async (t) => {
    const f = await setup(t);
    const token = await signToken(f.key, claims({ exp: T0 - SKEW + 1, iat: T0 + SKEW, auth_time: T0 + SKEW }));
    await f.verifier.verify(token);
  });
});

describe('Firebase signing keys: caching, rotation and refresh limits', () => {
  test('keys are fetched once and reused until max-age passes, then fetched again', async (t) => {
    const f = await setup(t);
    f.server.publish({ keys: [f.key], maxAge: 120 });
    const token = await signToken(f.key, claims());

    for (let i = 0; i < 5; i += 1) await f.verifier.verify(token);
    assert.equal(f.server.requests(), 1);
    f.advance(119);
    await f.verifier.verify(token);
    assert.equal(f.server.requests(), 1, 'still fresh one second before max-age');
    f.advance(1);
    await f.verifier.verify(token);
    assert.equal(f.server.requests(), 2, 'fetched again once max-age has passed');
  });

  test('max-age=0 does not turn every verification into a fetch: keys stay at least 60 s', async (t) => {
    const f = await setup(t);
    f.server.publish({ keys: [f.key], maxAge: 0 });
    const token = await signToken(f.key, claims());

    await f.verifier.verify(token);
    await f.verifier.verify(token);
    f.advance(59);
    await f.verifier.verify(token);
    assert.equal(f.server.requests(), 1);
    f.advance(1);
    await f.verifier.verify(token);
    assert.equal(f.server.requests(), 2);
  });

  test('concurrent verifications on a cold cache share one fetch', async (t) => {
    const f = await setup(t);
    const token = await signToken(f.key, claims());

    await Promise.all(Array.from({ length: 20 }, () => f.verifier.verify(token)));

    assert.equal(f.server.requests(), 1);
  });

  test('key rotation: a newly published kid verifies after a refresh; a retired kid stops once the cache expires', async (t) => {
    const f = await setup(t);
    const oldKey = f.key;
    const newKey = await createSigningKey();
    f.server.publish({ keys: [oldKey], maxAge: 300 });
    const oldToken = await signToken(oldKey, claims());
    const newToken = await signToken(newKey, claims());

    await f.verifier.verify(oldToken);
    assert.equal(f.server.requests(), 1);

    // Google starts publishing the next key.
    f.server.publish({ keys: [oldKey, newKey], maxAge: 300 });
    f.advance(10);
    await assertRefused(f.verifier.verify(newToken), 'unknown_kid');
    assert.equal(f.server.requests(), 1, 'an unknown kid right after a fetch does not refetch');
    f.advance(31);
    const identity = await f.verifier.verify(newToken);
    assert.equal(identity.subject, 'uid-alice');
    assert.equal(f.server.requests(), 2, 'one refresh found the new kid');
    await f.verifier.verify(oldToken);
    assert.equal(f.server.requests(), 2);

    // The old key is retired; the cached copy (fetched at +41 s, max-age 300) still serves it.
    f.server.publish({ keys: [newKey], maxAge: 300 });
    f.advance(299);
    await f.verifier.verify(oldToken);
    assert.equal(f.server.requests(), 2);
    f.advance(1);
    await assertRefused(f.verifier.verify(oldToken), 'unknown_kid');
    assert.equal(f.server.requests(), 3);
    await f.verifier.verify(newToken);
    assert.equal(f.server.requests(), 3);
  });

  test('a flood of tokens with made-up kids causes at most one refresh per 30 s', async (t) => {
    const f = await setup(t);
    const attacker = await createSigningKey();
    await f.verifier.verify(await signToken(f.key, claims()));
    assert.equal(f.server.requests(), 1);

    const flood = () =>
      Promise.all(
        Array.from({ length: 50 }, async (_, i) =>
          assertRefused(f.verifier.verify(await signToken(attacker, claims(), { kid: `${attacker.kid.slice(0, 36)}${i}` })), 'unknown_kid'),
        ),
      );
    await flood();
    assert.equal(f.server.requests(), 1, 'no refresh within 30 s of the last fetch');
    f.advance(30);
    await flood();
    assert.equal(f.server.requests(), 2, 'one shared refresh after 30 s');
    f.advance(29);
    await flood();
    assert.equal(f.server.requests(), 2);
  });

  test('when no key set can be fetched, tokens are refused (keys_unavailable) and retries are spaced out', async (t) => {
    const f = await setup(t);
    const token = await signToken(f.key, claims());
    f.server.publish({ status: 500, body: 'upstream error' });

    await assertRefused(f.verifier.verify(token), 'keys_unavailable');
    await assertRefused(f.verifier.verify(token), 'keys_unavailable');
    assert.equal(f.server.requests(), 1, 'a failed fetch is not retried at once');

    f.server.publish({ body: JSON.stringify({ [f.key.kid]: 'not a certificate' }) });
    f.advance(30);
    await assertRefused(f.verifier.verify(token), 'keys_unavailable');
    assert.equal(f.server.requests(), 2);

    f.server.publish({ keys: [f.key] });
    f.advance(30);
    await f.verifier.verify(token);
    assert.equal(f.server.requests(), 3);
  });
});

describe('Firebase ID token attack suite: each is refused with its reason', () => {
  interface Attack {
    name: string;
    reason: FirebaseTokenRejection;
    token(f: Fixture): Promise<string> | string;
    /** Seconds to move the clock before verifying. */
    later?: number;
  }

  const attacks: Attack[] = [
    { name: '`alg: none` outside emulator mode', reason: 'bad_alg', token: () => unsignedToken(claims()) },
    {
      name: '`alg: none` with the published kid outside emulator mode',
      reason: 'bad_alg',
      token: (f) => unsignedToken(claims(), { alg: 'none', kid: f.key.kid }),
    },
    {
      name: 'HS256 signed with the public certificate (PEM bytes) as the HMAC secret',
      reason: 'bad_alg',
      token: (f) =>
        new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: f.key.kid, typ: 'JWT' }).sign(new TextEncoder().encode(f.key.certPem)),
    },
    {
      name: 'ES256 with the published kid',
      reason: 'bad_alg',
      token: async (f) => new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: f.key.kid }).sign((await generateKeyPair('ES256')).privateKey),
    },
    { name: 'wrong aud', reason: 'bad_audience', token: (f) => signToken(f.key, claims({ aud: 'some-other-app' })) },
    { name: 'aud as an array holding the project', reason: 'bad_audience', token: (f) => signToken(f.key, claims({ aud: [PROJECT, 'x'] })) },
    { name: 'wrong iss', reason: 'bad_issuer', token: (f) => signToken(f.key, claims({ iss: 'https://evil.example/strongroom-test' })) },
    {
      name: 'a token for another project (aud and iss of that project)',
      reason: 'bad_audience',
      token: (f) => signToken(f.key, claims({ aud: 'other-project', iss: 'https://securetoken.google.com/other-project' })),
    },
    { name: 'expired (exp passed by more than the skew)', reason: 'expired', token: (f) => signToken(f.key, claims()), later: 3600 + SKEW },
    { name: 'iat in the future', reason: 'iat_in_future', token: (f) => signToken(f.key, claims({ iat: T0 + SKEW + 60 })) },
    { name: 'auth_time in the future', reason: 'auth_time_in_future', token: (f) => signToken(f.key, claims({ auth_time: T0 + SKEW + 60 })) },
    { name: 'nbf in the future', reason: 'not_yet_valid', token: (f) => signToken(f.key, claims({ nbf: T0 + SKEW + 60 })) },
    { name: 'missing exp', reason: 'malformed', token: (f) => signToken(f.key, claims({ exp: undefined })) },
    { name: 'missing auth_time', reason: 'malformed', token: (f) => signToken(f.key, claims({ auth_time: undefined })) },
    { name: 'iat as a string', reason: 'malformed', token: (f) => signToken(f.key, claims({ iat: String(T0) as unknown as number })) },
    {
      name: 'unknown kid (a key Google never published)',
      reason: 'unknown_kid',
      token: async () => signToken(await createSigningKey(), claims()),
    },
    { name: 'no kid', reason: 'unknown_kid', token: (f) => signToken(f.key, claims(), { kid: undefined }) },
    {
      name: 'the published kid with a signature from another key',
      reason: 'bad_signature',
      token: async (f) => signToken({ ...(await createSigningKey()), kid: f.key.kid }, claims()),
    },
    { name: 'empty sub', reason: 'bad_subject', token: (f) => signToken(f.key, claims({ sub: '' })) },
    { name: 'sub of 129 characters', reason: 'bad_subject', token: (f) => signToken(f.key, claims({ sub: 'u'.repeat(129) })) },
    { name: 'missing sub', reason: 'bad_subject', token: (f) => signToken(f.key, claims({ sub: undefined })) },
    { name: 'truncated signature', reason: 'bad_signature', token: async (f) => (await signToken(f.key, claims())).slice(0, -12) },
    { name: 'signature removed', reason: 'bad_signature', token: async (f) => (await signToken(f.key, claims())).replace(/[^.]+$/, '') },
    {
      name: 'payload swapped under a valid signature',
      reason: 'bad_signature',
      token: async (f) => {
        const [head, , signature] = (await signToken(f.key, claims())).split('.');
        return `${head}.${b64url(claims({ sub: 'uid-mallory' }))}.${signature}`;
      },
    },
    { name: 'a 10 MB token', reason: 'too_large', token: async (f) => `${await signToken(f.key, claims())}${'A'.repeat(10 * 1024 * 1024)}` },
    { name: 'one character over 8 KiB', reason: 'too_large', token: () => 'A'.repeat(8 * 1024 + 1) },
    { name: 'header segment that is not JSON', reason: 'malformed', token: (f) => `${b64url('{"alg":"RS256","kid":')}.${b64url(claims())}.${b64url(f.key.kid)}` },
    { name: 'header that is a JSON array', reason: 'malformed', token: () => `${b64url(['RS256'])}.${b64url(claims())}.AAAA` },
    {
      name: 'validly signed payload that is not JSON',
      reason: 'malformed',
      token: (f) => new CompactSign(new TextEncoder().encode('{"sub":"uid-alice"')).setProtectedHeader({ alg: 'RS256', kid: f.key.kid }).sign(f.key.privateKey),
    },
    {
      name: 'validly signed payload that is JSON null',
      reason: 'malformed',
      token: (f) => new CompactSign(new TextEncoder().encode('null')).setProtectedHeader({ alg: 'RS256', kid: f.key.kid }).sign(f.key.privateKey),
    },
    {
      name: 'validly signed payload that is not UTF-8',
      reason: 'malformed',
      token: (f) => new CompactSign(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])).setProtectedHeader({ alg: 'RS256', kid: f.key.kid }).sign(f.key.privateKey),
    },
    {
      name: 'critical header extensions (crit/b64)',
      reason: 'malformed',
      token: (f) => signToken(f.key, claims(), { crit: ['b64'], b64: true }),
    },
    { name: 'two segments', reason: 'malformed', token: async (f) => (await signToken(f.key, claims())).split('.').slice(0, 2).join('.') },
    { name: 'four segments', reason: 'malformed', token: async (f) => `${await signToken(f.key, claims())}.AAAA` },
    { name: 'characters outside base64url', reason: 'malformed', token: async (f) => (await signToken(f.key, claims())).replace('.', '+.') },
    { name: 'surrounding whitespace', reason: 'malformed', token: async (f) => ` ${await signToken(f.key, claims())}` },
    { name: 'empty string', reason: 'malformed', token: () => '' },
  ];

  for (const attack of attacks) {
    test(`${attack.name} → ${attack.reason}`, async (t) => {
      const f = await setup(t);
      const token = await attack.token(f);
      f.advance(attack.later ?? 0);
      await assertRefused(f.verifier.verify(token), attack.reason);
    });
  }

  test('an oversized token is refused before any parsing or key fetch', async (t) => {
    const f = await setup(t);
    const started = process.hrtime.bigint();
    await assertRefused(f.verifier.verify('A'.repeat(10 * 1024 * 1024)), 'too_large');
    assert.equal(f.server.requests(), 0);
    assert.ok(process.hrtime.bigint() - started < 50_000_000n, 'refused in under 50 ms');
  });

  test('a forged token (bad signature) is refused before its claims are read', async (t) => {
    const f = await setup(t);
    // Expired, wrong audience and forged: the signature is what the verifier reports.
    const forged = await signToken({ ...(await createSigningKey()), kid: f.key.kid }, claims({ aud: 'x', exp: T0 - 9999 }));
    await assertRefused(f.verifier.verify(forged), 'bad_signature');
  });

  test('the error carries neither the token, its signature, nor its claims', async (t) => {
    const f = await setup(t);
    for (const [token, reason] of [
      [await signToken(f.key, claims({ aud: 'wrong' })), 'bad_audience'],
      [await signToken({ ...(await createSigningKey()), kid: f.key.kid }, claims()), 'bad_signature'],
      [`${await signToken(f.key, claims())}x`, 'bad_signature'],
    ] as const) {
      const err = await assertRefused(f.verifier.verify(token), reason);
      const rendered = `${inspect(err, { depth: 10, showHidden: true })} ${JSON.stringify(err)} ${String(err)}`;
      for (const part of token.split('.')) assert.ok(!rendered.includes(part), 'no token segment in the error');
      assert.ok(!rendered.includes('alice@example.com'));
      assert.equal(err.cause, undefined);
    }
  });

  test('an empty emulatorHost is not emulator mode: alg none stays refused', async (t) => {
    const f = await setup(t);
    for (const emulatorHost of ['', null, undefined]) {
      await assertRefused(f.verifierWith({ emulatorHost }).verify(unsignedToken(claims())), 'bad_alg');
    }
  });
});

describe('Firebase ID tokens in emulator mode', () => {
  const emulator = { emulatorHost: '127.0.0.1:9099' };

  test('an unsigned token with correct claims is accepted, hashed over its signing input', async (t) => {
    const f = await setup(t, emulator);
    const token = unsignedToken(claims());

    const identity = await f.verifier.verify(token);

    assert.equal(identity.subject, 'uid-alice');
    assert.equal(identity.issuer, ISSUER);
    assert.equal(identity.email, 'alice@example.com');
    assert.equal(identity.emailVerified, true);
    assert.equal(identity.tokenHash, sha256Hex(token.slice(0, -1)));
    assert.equal(f.server.requests(), 0, 'unsigned tokens need no keys');
  });

  const refusals: Array<[string, JWTPayload, FirebaseTokenRejection, number?]> = [
    ['wrong aud', claims({ aud: 'other-project' }), 'bad_audience'],
    ['wrong iss', claims({ iss: 'https://securetoken.google.com/other-project' }), 'bad_issuer'],
    ['expired', claims(), 'expired', 3600 + SKEW],
    ['iat in the future', claims({ iat: T0 + 3600 }), 'iat_in_future'],
    ['empty sub', claims({ sub: '' }), 'bad_subject'],
  ];
  for (const [name, payload, reason, later] of refusals) {
    test(`an unsigned token with ${name} is still refused → ${reason}`, async (t) => {
      const f = await setup(t, emulator);
      f.advance(later ?? 0);
      await assertRefused(f.verifier.verify(unsignedToken(payload)), reason);
    });
  }

  test('an alg none token that carries a signature is refused', async (t) => {
    const f = await setup(t, emulator);
    await assertRefused(f.verifier.verify(`${unsignedToken(claims())}AAAA`), 'malformed');
  });

  test('RS256 tokens are still fully verified in emulator mode', async (t) => {
    const f = await setup(t, emulator);
    await f.verifier.verify(await signToken(f.key, claims()));
    const forged = await signToken({ ...(await createSigningKey()), kid: f.key.kid }, claims());
    await assertRefused(f.verifier.verify(forged), 'bad_signature');
    await assertRefused(
      f.verifier.verify(await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: f.key.kid }).sign(new TextEncoder().encode(f.key.certPem))),
      'bad_alg',
    );
  });
});

describe('createFirebaseVerifier configuration', () => {
  const base = { projectId: PROJECT, clockSkewSeconds: SKEW };
  const cases: Array<[string, Partial<FirebaseVerifierOptions>, string]> = [
    ['a plain-HTTP certificates URL', { certsUrl: 'http://127.0.0.1:1/certs' }, 'auth.firebase.certsUrl'],
    ['a certificates URL that does not parse', { certsUrl: 'not a url' }, 'auth.firebase.certsUrl'],
    ['an empty project id', { projectId: '' }, 'auth.firebase.projectId'],
    ['a project id with a slash', { projectId: 'a/b' }, 'auth.firebase.projectId'],
    ['a clock skew of an hour', { clockSkewSeconds: 3600 }, 'auth.clockSkewSeconds'],
    ['a negative clock skew', { clockSkewSeconds: -1 }, 'auth.clockSkewSeconds'],
  ];
  for (const [name, options, key] of cases) {
    test(`${name} is a configuration error naming ${key}`, () => {
      assert.throws(
        () => createFirebaseVerifier({ ...base, ...options }),
        (err: unknown) => err instanceof ConfigError && err.key === key,
      );
    });
  }

  test("Google's certificates URL is the default", async () => {
    const requested: string[] = [];
    const recordingFetch = (async (input: string) => {
      requested.push(input);
      throw new Error('offline');
    }) as unknown as typeof fetch;
    const verifier = createFirebaseVerifier({ ...base, fetch: recordingFetch });
    await assertRefused(verifier.verify(unsignedToken(claims(), { alg: 'RS256', kid: 'k' })), 'keys_unavailable');
    assert.deepEqual(requested, ['https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com']);
  });
});
