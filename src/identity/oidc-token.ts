import { createHash } from 'node:crypto';
import {
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type FetchImplementation,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { ConfigError, UnauthenticatedError } from '../errors.js';
import { DEFAULT_MFA_AMR_VALUES } from '../config/schema.js';
import type { VerifiedIdentity } from '../core/context.js';
import { createDiscoveryCache, fetchBoundedBody, requireHttpsUrl } from './oidc-discovery.js';

/**
 * Verifies bearer JWTs from generic OpenID Connect issuers (Google Workspace, Okta, Auth0,
 * Keycloak, Zitadel, …): discovery + JWKS over HTTPS, and per-issuer audience and algorithm
 * allow-lists. MFA evidence comes from the `amr` claim (RFC 8176).
 */

export interface OidcIssuerConfig {
  /** Exactly the `iss` value the issuer puts in its tokens; must be https. */
  issuer: string;
  /** A token is accepted when its `aud` holds any of these. */
  audiences: string[];
  /** Signature algorithms accepted; asymmetric only. Default `['RS256', 'ES256']`. */
  algorithms?: string[];
  /** `amr` values that count as a second factor. Default {@link DEFAULT_MFA_AMR_VALUES}. */
  mfaAmrValues?: string[];
}

export interface OidcVerifierOptions {
  issuers: OidcIssuerConfig[];
  clockSkewSeconds: number;
  /** Injected so tests can trust a local CA; defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Milliseconds since the epoch; drives the token time checks and the discovery cache. */
  now?: () => number;
  /** Minimum pause between JWKS refetches triggered by an unknown `kid`. Default 30 s. */
  jwksCooldownMs?: number;
  /** How long fetched keys are used before the JWKS is fetched again. Default 10 min. */
  jwksMaxAgeMs?: number;
}

/**
 * `emailVerified` is true only when the issuer asserts `email_verified: true` (the boolean) for a
 * present email; `mfa` when `amr` holds a value configured as a second factor.
 */
export interface OidcIdentity extends Omit<VerifiedIdentity, 'secondFactor'> {
  /** SHA-256 hex of the decoded signature bytes: an audit and replay handle that is never the token. */
  tokenHash: string;
}

export interface OidcVerifier {
  verify(token: string): Promise<OidcIdentity>;
  /**
   * Unverified peek: the configured issuer this token names, or null. For routing a bearer token
   * to the right verifier only; it proves nothing.
   */
  issuerOf(token: string): string | null;
}

/** Why a token was refused, for the audit log; the error message itself stays generic. */
export type OidcRejectionReason =
  | 'too_large'
  | 'malformed'
  | 'unknown_issuer'
  | 'bad_alg'
  | 'discovery_failed'
  | 'keys_unavailable'
  | 'unknown_kid'
  | 'bad_signature'
  | 'bad_issuer'
  | 'bad_audience'
  | 'expired'
  | 'not_yet_valid'
  | 'iat_in_future'
  | 'missing_claim'
  | 'bad_subject'
  | 'unsupported';

export class OidcTokenRejectedError extends UnauthenticatedError {
  constructor(readonly reason: OidcRejectionReason) {
    super();
  }
}

export const DEFAULT_ALGORITHMS = ['RS256', 'ES256'];

/** Refuses before parsing: a real ID token is 1–2 KiB, and parsing megabytes is a cheap DoS. */
const MAX_TOKEN_CHARS = 8 * 1024;
const MAX_SUBJECT_CHARS = 255;
/** HS* would let anyone holding the (public) key material forge tokens; `none` needs no key at all. */
const ASYMMETRIC_ALGORITHMS = new Set([
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519',
]);
const DISCOVERY_MAX_AGE_MS = 60 * 60_000;
const DISCOVERY_RETRY_AFTER_MS = 30_000;

interface IssuerPolicy {
  issuer: string;
  audiences: string[];
  algorithms: string[];
  mfaAmrValues: Set<string>;
}

interface IssuerKeys {
  jwksUri: string;
  getKey: JWTVerifyGetKey;
}

/**
 * @example
 * const oidc = createOidcVerifier({ issuers: [{ issuer: 'https://acme.okta.com', audiences: ['api://strongroom'] }], clockSkewSeconds: 60 });
 * const who = await oidc.verify(bearer); // throws OidcTokenRejectedError (an UnauthenticatedError)
 */
export function createOidcVerifier(opts: OidcVerifierOptions): OidcVerifier {
  const policies = issuerPolicies(opts.issuers);
  const skew = opts.clockSkewSeconds;
  if (!Number.isFinite(skew) || skew < 0) throw new ConfigError('auth.oidc.clockSkewSeconds', 'must be a number ≥ 0');
  const fetchImpl = opts.fetch ?? fetch;
  const now = opts.now ?? Date.now;
  const discovery = createDiscoveryCache({
    fetch: fetchImpl,
    now,
    maxAgeMs: DISCOVERY_MAX_AGE_MS,
    retryAfterMs: DISCOVERY_RETRY_AFTER_MS,
  });
  const keysByIssuer = new Map<string, IssuerKeys>();

  // Key sets go through the same https-only, no-redirect, size-capped fetch as discovery.
  const jwksFetch: FetchImplementation = async (url, init) =>
    new Response(await fetchBoundedBody(fetchImpl, url, init), {
      status: 200,
      headers: { 'content-type': 'application/json' },
    });

  async function keysFor(policy: IssuerPolicy): Promise<JWTVerifyGetKey> {
    let jwksUri: URL;
    try {
      ({ jwksUri } = await discovery.get(policy.issuer));
    } catch {
      throw new OidcTokenRejectedError('discovery_failed');
    }
    const known = keysByIssuer.get(policy.issuer);
    if (known && known.jwksUri === jwksUri.href) return known.getKey;
    const remote = createRemoteJWKSet(jwksUri, {
      [customFetch]: jwksFetch,
      cooldownDuration: opts.jwksCooldownMs ?? 30_000,
      cacheMaxAge: opts.jwksMaxAgeMs ?? 600_000,
    });
    const getKey: JWTVerifyGetKey = async (header, token) => {
      try {
        return await remote(header, token);
      } catch (err) {
        if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
          throw new OidcTokenRejectedError('unknown_kid');
        }
        throw new OidcTokenRejectedError('keys_unavailable');
      }
    };
    keysByIssuer.set(policy.issuer, { jwksUri: jwksUri.href, getKey });
    return getKey;
  }

  async function verify(token: string): Promise<OidcIdentity> {
    const peeked = peek(token);
    // Exact match before any network access: an issuer we do not configure never makes us fetch (SSRF).
    const policy = policies.get(peeked.iss);
    if (!policy) throw new OidcTokenRejectedError('unknown_issuer');
    if (!policy.algorithms.includes(peeked.alg)) throw new OidcTokenRejectedError('bad_alg');

    const getKey = await keysFor(policy);
    const nowMs = now();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        issuer: policy.issuer,
        audience: policy.audiences,
        algorithms: policy.algorithms,
        clockTolerance: skew,
        currentDate: new Date(nowMs),
        requiredClaims: ['exp', 'iat', 'sub'],
      }));
    } catch (err) {
      throw new OidcTokenRejectedError(reasonFor(err));
    }
    // jose checks `iat` against the clock only with maxTokenAge; a future `iat` means a forged or broken clock.
    if ((payload.iat as number) > nowMs / 1000 + skew) throw new OidcTokenRejectedError('iat_in_future');
    const subject = payload.sub;
    if (typeof subject !== 'string' || subject.length === 0 || subject.length > MAX_SUBJECT_CHARS) {
      throw new OidcTokenRejectedError('bad_subject');
    }
    const amr = amrOf(payload);
    const email = typeof payload.email === 'string' && payload.email.length > 0 ? payload.email : null;
    return {
      issuer: policy.issuer,
      subject,
      email,
      emailVerified: email !== null && payload.email_verified === true,
      mfa: amr.some((value) => policy.mfaAmrValues.has(value)),
      amr,
      tokenHash: createHash('sha256').update(Buffer.from(peeked.signature, 'base64url')).digest('hex'),
    };
  }

  function issuerOf(token: string): string | null {
    try {
      const { iss } = peek(token);
      return policies.has(iss) ? iss : null;
    } catch {
      return null;
    }
  }

  return { verify, issuerOf };
}

interface PeekedToken {
  iss: string;
  alg: string;
  signature: string;
}

/** Reads header and claims without trusting them, only to choose the issuer and refuse early. */
function peek(token: string): PeekedToken {
  if (typeof token !== 'string') throw new OidcTokenRejectedError('malformed');
  if (token.length > MAX_TOKEN_CHARS) throw new OidcTokenRejectedError('too_large');
  let alg: unknown;
  let iss: unknown;
  try {
    ({ alg } = decodeProtectedHeader(token));
    ({ iss } = decodeJwt(token));
  } catch {
    throw new OidcTokenRejectedError('malformed');
  }
  if (typeof alg !== 'string') throw new OidcTokenRejectedError('malformed');
  if (typeof iss !== 'string') throw new OidcTokenRejectedError('unknown_issuer');
  return { iss, alg, signature: token.slice(token.lastIndexOf('.') + 1) };
}

/** `amr` is an array of strings (RFC 8176); anything else counts as no evidence, so MFA fails closed. */
function amrOf(payload: JWTPayload): string[] {
  const amr = payload.amr;
  if (!Array.isArray(amr)) return [];
  return amr.filter((value): value is string => typeof value === 'string');
}

function reasonFor(err: unknown): OidcRejectionReason {
  if (err instanceof OidcTokenRejectedError) return err.reason;
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return 'missing_claim';
    if (err.claim === 'aud') return 'bad_audience';
    if (err.claim === 'iss') return 'bad_issuer';
    if (err.claim === 'nbf') return 'not_yet_valid';
    return 'malformed';
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'bad_alg';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad_signature';
  if (err instanceof errors.JOSENotSupported) return 'unsupported';
  return 'malformed';
}

function issuerPolicies(configs: OidcIssuerConfig[]): Map<string, IssuerPolicy> {
  const key = 'auth.oidc.issuers';
  const policies = new Map<string, IssuerPolicy>();
  for (const config of configs) {
    const { issuer } = config;
    let url: URL;
    try {
      url = requireHttpsUrl(issuer, 'issuer');
    } catch {
      throw new ConfigError(key, `${JSON.stringify(issuer)} must be an https URL`);
    }
    // OIDC Core §2: an issuer identifier has no query or fragment.
    if (url.search !== '' || url.hash !== '' || issuer.includes('?') || issuer.includes('#')) {
      throw new ConfigError(key, `${issuer} must not have a query or fragment`);
    }
    if (policies.has(issuer)) throw new ConfigError(key, `${issuer} is listed twice`);
    const audiences = config.audiences.filter((aud) => typeof aud === 'string' && aud.length > 0);
    if (audiences.length === 0 || audiences.length !== config.audiences.length) {
      throw new ConfigError(key, `${issuer}: audiences must be a non-empty list of non-empty strings`);
    }
    const algorithms = config.algorithms ?? DEFAULT_ALGORITHMS;
    if (algorithms.length === 0) throw new ConfigError(key, `${issuer}: algorithms must not be empty`);
    for (const alg of algorithms) {
      if (!ASYMMETRIC_ALGORITHMS.has(alg)) {
        throw new ConfigError(key, `${issuer}: algorithm ${JSON.stringify(alg)} is not an accepted asymmetric JWS algorithm`);
      }
    }
    policies.set(issuer, {
      issuer,
      audiences: [...audiences],
      algorithms: [...algorithms],
      mfaAmrValues: new Set(config.mfaAmrValues ?? DEFAULT_MFA_AMR_VALUES),
    });
  }
  return policies;
}
