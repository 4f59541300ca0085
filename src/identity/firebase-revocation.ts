import { readFileSync } from 'node:fs';
import { importPKCS8, SignJWT } from 'jose';
import { ConfigError, UnauthenticatedError, UnavailableError } from '../errors.js';

/**
 * Asks Firebase (the Identity Toolkit REST API) whether a signed-in user was disabled, deleted or
 * had its sessions revoked after the token was issued: what the Admin SDK's verifyIdToken(…, true)
 * does. Answers are cached briefly per user, so a revocation takes effect within CACHE_MS.
 */
export interface RevocationChecker {
  check(uid: string, authTime: number): Promise<void>;
}

export type RevocationRejection = 'revoked' | 'user_disabled' | 'user_not_found';

export class RevokedTokenError extends UnauthenticatedError {
  constructor(readonly reason: RevocationRejection) {
    super();
  }
}

export interface RevocationOptions {
  projectId: string;
  /** The Auth emulator (host:port): lookups go there, authorised as its `owner`. */
  emulatorHost: string | null;
  /** A service account key (JSON); required outside the emulator. */
  serviceAccountFile: string | null;
  identityToolkitUrl: string;
  fetch?: typeof fetch;
  now?: () => number;
}

const CACHE_MS = 30_000;
const TIMEOUT_MS = 5_000;
const SCOPE = 'https://www.googleapis.com/auth/identitytoolkit';

interface ServiceAccount {
  client_email: string;
  private_key: string;
  token_uri: string;
}

interface Lookup {
  disabled: boolean;
  /** Seconds since the epoch: tokens whose auth_time is earlier are revoked. */
  validSince: number;
  found: boolean;
  at: number;
}

function readServiceAccount(file: string): ServiceAccount {
  let parsed: Partial<ServiceAccount>;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<ServiceAccount>;
  } catch {
    throw new ConfigError('auth.firebase.serviceAccountFile', 'is not a readable service account key (JSON)');
  }
  const { client_email, private_key, token_uri } = parsed;
  if (typeof client_email !== 'string' || typeof private_key !== 'string' || typeof token_uri !== 'string' || !token_uri.startsWith('https://')) {
    throw new ConfigError('auth.firebase.serviceAccountFile', 'needs client_email, private_key and an https token_uri');
  }
  return { client_email, private_key, token_uri };
}

export function createRevocationChecker(opts: RevocationOptions): RevocationChecker {
  const fetchImpl = opts.fetch ?? fetch;
  const now = opts.now ?? Date.now;
  const account = opts.emulatorHost ? null : readServiceAccount(opts.serviceAccountFile ?? '');
  const base = opts.emulatorHost ? `http://${opts.emulatorHost}/identitytoolkit.googleapis.com` : opts.identityToolkitUrl.replace(/\/$/, '');
  const lookups = new Map<string, Lookup>();
  let accessToken: { value: string; until: number } | null = null;

  const call = async (url: string, init: RequestInit) => {
    try {
      return await fetchImpl(url, { ...init, redirect: 'error', signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch {
      throw new UnavailableError('Firebase Authentication cannot be reached to check for revoked sessions; retry later');
    }
  };

  /** An OAuth access token for the service account (RFC 7523 JWT bearer grant), reused until near its end. */
  async function bearer(): Promise<string> {
    if (!account) return 'owner';
    if (accessToken && accessToken.until > now()) return accessToken.value;
    const seconds = Math.floor(now() / 1000);
    const assertion = await new SignJWT({ scope: SCOPE })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
      .setIssuer(account.client_email)
      .setAudience(account.token_uri)
      .setIssuedAt(seconds)
      .setExpirationTime(seconds + 3600)
      .sign(await importPKCS8(account.private_key, 'RS256'));
    const res = await call(account.token_uri, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }).toString(),
    });
    const body = (await res.json().catch(() => ({}))) as { access_token?: unknown; expires_in?: unknown };
    if (!res.ok || typeof body.access_token !== 'string') throw new UnavailableError('the service account could not get an access token for Firebase');
    const lifetime = typeof body.expires_in === 'number' ? body.expires_in : 3600;
    accessToken = { value: body.access_token, until: now() + Math.max(0, lifetime - 60) * 1000 };
    return accessToken.value;
  }

  async function lookup(uid: string): Promise<Lookup> {
    const cached = lookups.get(uid);
    if (cached && now() - cached.at < CACHE_MS) return cached;
    const res = await call(`${base}/v1/projects/${encodeURIComponent(opts.projectId)}/accounts:lookup`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await bearer()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ localId: [uid] }),
    });
    if (!res.ok) throw new UnavailableError('Firebase Authentication refused the session check; retry later');
    const body = (await res.json()) as { users?: { disabled?: boolean; validSince?: string }[] };
    const user = body.users?.[0];
    const result: Lookup = { found: user !== undefined, disabled: user?.disabled === true, validSince: Number(user?.validSince ?? 0), at: now() };
    if (lookups.size >= 10_000) lookups.delete(lookups.keys().next().value!);
    lookups.set(uid, result);
    return result;
  }

  return {
    async check(uid, authTime) {
      const user = await lookup(uid);
      if (!user.found) throw new RevokedTokenError('user_not_found');
      if (user.disabled) throw new RevokedTokenError('user_disabled');
      if (authTime < user.validSince) throw new RevokedTokenError('revoked');
    },
  };
}
