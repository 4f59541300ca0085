import { createHash } from 'node:crypto';
import { compactVerify, errors } from 'jose';
import { ConfigError, UnauthenticatedError } from '../errors.js';
import { createGoogleCerts, GOOGLE_SECURETOKEN_CERTS_URL } from './google-certs.js';

export { GOOGLE_SECURETOKEN_CERTS_URL };

export interface FirebaseVerifierOptions {
  projectId: string;
  /** Default: Google's securetoken x509 metadata URL. Must be https. */
  certsUrl?: string;
  /** Allowance for clocks that disagree a little, applied to exp, iat, auth_time and nbf (0…300). */
  clockSkewSeconds: number;
  /** When set (non-empty): emulator mode, where unsigned `alg: none` tokens are accepted (and only then). */
  emulatorHost?: string | null;
  /** Injected so tests can trust a local CA and count fetches. */
  fetch?: typeof fetch;
  /** Milliseconds since the epoch. */
  now?: () => number;
}

export interface FirebaseIdentity {
  issuer: string;
  subject: string;
  email: string | null;
  emailVerified: boolean;
  signInSecondFactor: string | null;
  /** Seconds since the epoch. */
  authTime: number;
  /** SHA-256 (hex) of the decoded signature, for replay detection and audit; unsigned emulator tokens hash their signing input. Never the token. */
  tokenHash: string;
}

export interface FirebaseVerifier {
  verify(idToken: string): Promise<FirebaseIdentity>;
}

/** Why a token was refused: for audit logs and metrics, never for the caller (who sees one generic 401). */
export type FirebaseTokenRejection =
  | 'too_large'
  | 'malformed'
  | 'bad_alg'
  | 'unknown_kid'
  | 'keys_unavailable'
  | 'bad_signature'
  | 'bad_audience'
  | 'bad_issuer'
  | 'bad_subject'
  | 'expired'
  | 'not_yet_valid'
  | 'iat_in_future'
  | 'auth_time_in_future';

/** An UnauthenticatedError with the generic message; `reason` is for the audit log only. */
export class FirebaseTokenError extends UnauthenticatedError {
  constructor(readonly reason: FirebaseTokenRejection) {
    super();
  }
}

/** Refused before any parsing, so a 10 MB header costs nothing (Firebase ID tokens are ~1 KB). */
const MAX_TOKEN_CHARS = 8 * 1024;
const COMPACT_JWS = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)$/;
const MAX_SUBJECT_CHARS = 128;
const MAX_SKEW_SECONDS = 300;

type Claims = Record<string, unknown>;

/**
 * Verifies Firebase ID tokens as https://firebase.google.com/docs/auth/admin/verify-id-tokens
 * specifies for third-party JWT libraries.
 *
 * @example
 * const firebase = createFirebaseVerifier({ projectId: 'acme-prod', clockSkewSeconds: 30 });
 * const who = await firebase.verify(bearerToken); // throws FirebaseTokenError (401) otherwise
 */
export function createFirebaseVerifier(opts: FirebaseVerifierOptions): FirebaseVerifier {
  const { projectId, clockSkewSeconds: skew } = opts;
  if (typeof projectId !== 'string' || !/^[a-z0-9][a-z0-9.:-]{0,127}$/.test(projectId)) {
    throw new ConfigError('auth.firebase.projectId', 'must be a Firebase project id');
  }
  if (!Number.isFinite(skew) || skew < 0 || skew > MAX_SKEW_SECONDS) {
    throw new ConfigError('auth.clockSkewSeconds', `must be between 0 and ${MAX_SKEW_SECONDS}`);
  }
  const certsUrl = opts.certsUrl ?? GOOGLE_SECURETOKEN_CERTS_URL;
  // Keys fetched over plain HTTP could be swapped by anyone on the path, and with them every identity.
  if (!URL.canParse(certsUrl) || new URL(certsUrl).protocol !== 'https:') {
    throw new ConfigError('auth.firebase.certsUrl', 'must be an https URL');
  }
  const now = opts.now ?? Date.now;
  const emulator = typeof opts.emulatorHost === 'string' && opts.emulatorHost !== '';
  const issuer = `https://securetoken.google.com/${projectId}`;
  const certs = createGoogleCerts({ url: certsUrl, fetch: opts.fetch ?? fetch, now });

  async function verifiedPayload(token: string, header: Claims, signature: string): Promise<Uint8Array> {
    // b64:false would make jose verify a payload we never parse as a JWT; Firebase uses no extensions.
    if ('crit' in header || 'b64' in header) throw new FirebaseTokenError('malformed');
    if (header.alg !== 'RS256') throw new FirebaseTokenError('bad_alg');
    if (typeof header.kid !== 'string') throw new FirebaseTokenError('unknown_kid');
    let key;
    try {
      key = await certs.keyFor(header.kid);
    } catch {
      throw new FirebaseTokenError('keys_unavailable');
    }
    if (key === undefined) throw new FirebaseTokenError('unknown_kid');
    if (signature === '') throw new FirebaseTokenError('bad_signature');
    try {
      return (await compactVerify(token, key, { algorithms: ['RS256'] })).payload;
    } catch (err) {
      // No `cause`: jose's claim errors carry the payload, which may hold personal data.
      throw new FirebaseTokenError(err instanceof errors.JWSSignatureVerificationFailed ? 'bad_signature' : 'malformed');
    }
  }

  return {
    async verify(idToken) {
      if (typeof idToken !== 'string') throw new FirebaseTokenError('malformed');
      if (idToken.length > MAX_TOKEN_CHARS) throw new FirebaseTokenError('too_large');
      const parts = COMPACT_JWS.exec(idToken);
      if (!parts) throw new FirebaseTokenError('malformed');
      const [, headerPart, payloadPart, signaturePart] = parts as unknown as [string, string, string, string];
      const header = decodeJsonObject(Buffer.from(headerPart, 'base64url'));

      let payload: Uint8Array;
      let tokenHash: string;
      if (header.alg === 'none' && emulator) {
        // The Auth emulator signs nothing: its tokens end in an empty signature, and nothing else is unsigned.
        if (signaturePart !== '' || 'crit' in header) throw new FirebaseTokenError('malformed');
        payload = Buffer.from(payloadPart, 'base64url');
        tokenHash = sha256Hex(`${headerPart}.${payloadPart}`);
      } else {
        payload = await verifiedPayload(idToken, header, signaturePart);
        // The decoded bytes, not the text: base64url's spare trailing bits give one signature several spellings.
        tokenHash = sha256Hex(Buffer.from(signaturePart, 'base64url'));
      }
      return identityFrom(decodeJsonObject(payload), issuer, projectId, now() / 1000, skew, tokenHash);
    },
  };
}

function identityFrom(claims: Claims, issuer: string, projectId: string, nowSeconds: number, skew: number, tokenHash: string): FirebaseIdentity {
  const { aud, iss, sub, exp, iat, auth_time: authTime, nbf } = claims;
  if (aud !== projectId) throw new FirebaseTokenError('bad_audience');
  if (iss !== issuer) throw new FirebaseTokenError('bad_issuer');
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > MAX_SUBJECT_CHARS) throw new FirebaseTokenError('bad_subject');
  if (!isSeconds(exp) || !isSeconds(iat) || !isSeconds(authTime) || (nbf !== undefined && !isSeconds(nbf))) {
    throw new FirebaseTokenError('malformed');
  }
  if (exp <= nowSeconds - skew) throw new FirebaseTokenError('expired');
  if (iat > nowSeconds + skew) throw new FirebaseTokenError('iat_in_future');
  if (authTime > nowSeconds + skew) throw new FirebaseTokenError('auth_time_in_future');
  if (nbf !== undefined && nbf > nowSeconds + skew) throw new FirebaseTokenError('not_yet_valid');

  const firebase = isObject(claims.firebase) ? claims.firebase : {};
  const secondFactor = firebase.sign_in_second_factor;
  return {
    issuer,
    subject: sub,
    email: typeof claims.email === 'string' ? claims.email : null,
    emailVerified: claims.email_verified === true,
    signInSecondFactor: typeof secondFactor === 'string' && secondFactor !== '' ? secondFactor : null,
    authTime,
    tokenHash,
  };
}

function decodeJsonObject(bytes: Uint8Array): Claims {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new FirebaseTokenError('malformed');
  }
  if (!isObject(value)) throw new FirebaseTokenError('malformed');
  return value;
}

function isObject(value: unknown): value is Claims {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isSeconds(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
