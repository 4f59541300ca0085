import { readFileSync } from 'node:fs';
import { decodeJwt } from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import type { Config } from '../config/schema.js';
import { authenticateApiKey, claimedApiKeyId } from '../core/api-keys.js';
import type { Core, Principal, RequestMeta, VerifiedIdentity } from '../core/context.js';
import { resolveMember } from '../core/members.js';
import { activeGrant } from '../core/access-requests.js';
import { ForbiddenError, MfaRequiredError, NotFoundError, UnauthenticatedError, UnavailableError } from '../errors.js';
import { FailureLimiter } from './failure-limiter.js';
import { createFirebaseVerifier, type FirebaseVerifier } from './firebase-token.js';
import { createRevocationChecker, type RevocationChecker } from './firebase-revocation.js';
import { createOidcVerifier, type OidcVerifier } from './oidc-token.js';
import { createOperatorRealm, type OperatorRealm } from './operators.js';

const BEARER = /^Bearer ([\x21-\x7e]{1,16384})$/;

/** The identity providers this deployment trusts, built once from the configuration. */
export interface Authenticator {
  operators: OperatorRealm;
  failures: FailureLimiter;
  firebase: FirebaseVerifier | null;
  firebaseIssuer: string | null;
  firebaseRevocation: RevocationChecker | null;
  oidc: OidcVerifier | null;
}

/** A fetch that also trusts `auth.caFile`, for identity providers behind a private CA. */
function fetchTrusting(caFile: string | null): typeof fetch | undefined {
  if (!caFile) return undefined;
  const dispatcher = new Agent({ connect: { ca: readFileSync(caFile, 'utf8') } });
  // undici's own fetch: node's built-in one may not accept a dispatcher from this undici version.
  const trusting = (input: Parameters<typeof undiciFetch>[0], init?: Parameters<typeof undiciFetch>[1]) => undiciFetch(input, { ...init, dispatcher });
  return trusting as unknown as typeof fetch;
}

export function createAuthenticator(config: Pick<Config, 'auth' | 'operators'>, now: () => number = Date.now): Authenticator {
  const { auth } = config;
  const fetchImpl = fetchTrusting(auth.caFile);
  const { firebase, oidc } = auth;
  return {
    operators: createOperatorRealm(config.operators),
    failures: new FailureLimiter(auth.failureLimit.maxFailures, auth.failureLimit.windowSeconds * 1000, now),
    firebase: firebase.projectId
      ? createFirebaseVerifier({
          projectId: firebase.projectId,
          certsUrl: firebase.certsUrl,
          emulatorHost: firebase.emulatorHost,
          clockSkewSeconds: auth.clockSkewSeconds,
          ...(fetchImpl ? { fetch: fetchImpl } : {}),
          now,
        })
      : null,
    firebaseIssuer: firebase.projectId ? `https://securetoken.google.com/${firebase.projectId}` : null,
    firebaseRevocation:
      firebase.projectId && firebase.checkRevoked
        ? createRevocationChecker({
            projectId: firebase.projectId,
            emulatorHost: firebase.emulatorHost,
            serviceAccountFile: firebase.serviceAccountFile,
            identityToolkitUrl: firebase.identityToolkitUrl,
            ...(fetchImpl ? { fetch: fetchImpl } : {}),
            now,
          })
        : null,
    oidc:
      oidc.issuers.length > 0
        ? createOidcVerifier({
            issuers: oidc.issuers,
            clockSkewSeconds: auth.clockSkewSeconds,
            ...(fetchImpl ? { fetch: fetchImpl } : {}),
            now,
          })
        : null,
  };
}

/** The unverified `iss`, only to pick the verifier that will check everything. */
function peekIssuer(token: string): string | null {
  try {
    const { iss } = decodeJwt(token);
    return typeof iss === 'string' ? iss : null;
  } catch {
    return null;
  }
}

/** The provider's keys could not be fetched: the token may be fine, so the caller should retry, not sign out. */
const PROVIDER_DOWN = new Set(['keys_unavailable', 'discovery_failed']);

async function verifyIdentity(authenticator: Authenticator, token: string): Promise<VerifiedIdentity> {
  try {
    return await verifyWithProvider(authenticator, token);
  } catch (error) {
    const reason = (error as { reason?: unknown }).reason;
    if (typeof reason === 'string' && PROVIDER_DOWN.has(reason)) {
      throw new UnavailableError('the identity provider cannot be reached; retry later');
    }
    throw error;
  }
}

/** A token no configured provider will verify; `reason` is for the audit log only. */
class UntrustedTokenError extends UnauthenticatedError {
  constructor(readonly reason: 'malformed' | 'unknown_issuer') {
    super();
  }
}

async function verifyWithProvider(authenticator: Authenticator, token: string): Promise<VerifiedIdentity> {
  const claimedIssuer = peekIssuer(token);
  if (authenticator.firebase && claimedIssuer === authenticator.firebaseIssuer) {
    const who = await authenticator.firebase.verify(token);
    await authenticator.firebaseRevocation?.check(who.subject, who.authTime);
    const { issuer, subject, email, emailVerified, signInSecondFactor } = who;
    return { issuer, subject, email, emailVerified, mfa: signInSecondFactor !== null, amr: [], secondFactor: signInSecondFactor };
  }
  if (authenticator.oidc && authenticator.oidc.issuerOf(token)) {
    const { issuer, subject, email, emailVerified, mfa, amr } = await authenticator.oidc.verify(token);
    return { issuer, subject, email, emailVerified, mfa, amr, secondFactor: null };
  }
  throw new UntrustedTokenError(claimedIssuer === null ? 'malformed' : 'unknown_issuer');
}

/**
 * Who is calling, from the Authorization header: an API key (`sr_…`, machine to machine) or an ID
 * token from a trusted provider, which must belong to a member of the tenant addressed or to an
 * operator. A member of the tenant is that member there, even if also an operator.
 */
export async function authenticate(
  core: Core,
  authenticator: Authenticator,
  authorization: string | undefined,
  tenantId: string | undefined,
  meta: RequestMeta,
): Promise<Principal> {
  const match = authorization === undefined ? null : BEARER.exec(authorization);
  if (!match) throw new UnauthenticatedError('an Authorization: Bearer credential is required');
  const credential = match[1]!;
  if (credential.startsWith('sr_')) return authenticateApiKey(core, credential);
  const identity = await verifyIdentity(authenticator, credential);
  const member = tenantId ? await resolveMember(core, tenantId, identity, meta) : null;
  if (member) return member;
  const operator = authenticator.operators.resolve(identity);
  if (operator) {
    if (!authenticator.operators.hasMfa(identity)) throw new MfaRequiredError('operators must sign in with a second factor');
    const grant = tenantId ? await activeGrant(core, tenantId, operator.operatorId) : null;
    return { kind: 'operator', ...operator, grant };
  }
  // Someone who is neither sees what a stranger sees: no such tenant.
  if (tenantId) throw new NotFoundError('tenant not found');
  throw new ForbiddenError('this is for the deployment’s operators only');
}

/**
 * What a credential claims to be, before it is verified: the API key id, or the token's issuer and
 * subject. For rate limits and audit events only; never trusted for access.
 */
export function claimedCredential(authorization: string | undefined): string {
  const credential = authorization === undefined ? undefined : BEARER.exec(authorization)?.[1];
  if (!credential) return 'none';
  const keyId = claimedApiKeyId(credential);
  if (keyId) return `api-key:${keyId}`;
  try {
    const { iss, sub } = decodeJwt(credential);
    if (typeof iss === 'string' && typeof sub === 'string') return `token:${iss.slice(0, 200)}#${sub.slice(0, 128)}`;
  } catch {
    // Not a JWT.
  }
  return 'unrecognised';
}
