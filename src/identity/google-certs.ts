import { importX509, type CryptoKey } from 'jose';
import { UnavailableError } from '../errors.js';

/** Google's published Firebase ID token signing certificates (JSON object: kid → PEM X.509). */
export const GOOGLE_SECURETOKEN_CERTS_URL =
  'https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com';

export interface GoogleCertsOptions {
  url: string;
  fetch: typeof fetch;
  /** Milliseconds since the epoch. */
  now: () => number;
}

/** The signing keys published at one certificates URL, cached as the response's Cache-Control allows. */
export interface GoogleCerts {
  /** The RS256 verification key for `kid`, or undefined when it is not published. Throws UnavailableError when no current key set can be fetched. */
  keyFor(kid: string): Promise<CryptoKey | undefined>;
}

/** A max-age of 0 (or none at all) would otherwise mean one fetch per verification. */
const MIN_FRESH_MS = 60_000;
/** A misconfigured or hostile endpoint cannot pin a key set (and a retired key) for longer than this. */
const MAX_FRESH_MS = 24 * 3600_000;
/** Tokens with made-up kids (kid-flooding) cause at most one fetch per this interval; failed fetches are retried no sooner either. */
const REFETCH_INTERVAL_MS = 30_000;
const FETCH_TIMEOUT_MS = 10_000;
/** Google publishes two or three certificates of ~1.2 KB; anything far larger is not a key set. */
const MAX_BODY_BYTES = 64 * 1024;
const MAX_KEYS = 32;
const KID = /^[\x21-\x7e]{1,128}$/;

interface KeySet {
  keys: Map<string, CryptoKey>;
  freshUntil: number;
}

/**
 * A cached view of the certificates at `url`. Concurrent callers share one fetch.
 *
 * @example
 * const certs = createGoogleCerts({ url: GOOGLE_SECURETOKEN_CERTS_URL, fetch, now: Date.now });
 * const key = await certs.keyFor(header.kid);
 */
export function createGoogleCerts(opts: GoogleCertsOptions): GoogleCerts {
  let current: KeySet | undefined;
  let inflight: Promise<void> | undefined;
  let lastAttemptAt = -Infinity;
  let lastAttemptFailed = false;

  const refresh = (): Promise<void> => {
    inflight ??= (async () => {
      lastAttemptAt = opts.now();
      try {
        current = await fetchKeySet(opts);
        lastAttemptFailed = false;
      } catch (err) {
        lastAttemptFailed = true;
        throw err;
      }
    })().finally(() => {
      inflight = undefined;
    });
    return inflight;
  };

  const unavailable = () => new UnavailableError('the Firebase token signing keys could not be fetched');

  return {
    async keyFor(kid) {
      const now = opts.now();
      const sinceAttempt = now - lastAttemptAt;
      if (current === undefined || now >= current.freshUntil) {
        if (inflight === undefined && lastAttemptFailed && sinceAttempt < REFETCH_INTERVAL_MS) throw unavailable();
        try {
          await refresh();
        } catch {
          throw unavailable();
        }
      } else if (!current.keys.has(kid) && (inflight !== undefined || sinceAttempt >= REFETCH_INTERVAL_MS)) {
        // Google publishes a new key before signing with it, so an unknown kid may mean our copy is old.
        await refresh().catch(() => undefined); // the cached set is still fresh; the kid stays unknown
      }
      return current?.keys.get(kid);
    },
  };
}

async function fetchKeySet(opts: GoogleCertsOptions): Promise<KeySet> {
  // Freshness counts from the request, so a slow answer never extends it.
  const requestedAt = opts.now();
  const res = await opts.fetch(opts.url, {
    headers: { accept: 'application/json' },
    // A redirect could lead off the authenticated HTTPS origin the keys are trusted for.
    redirect: 'error',
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  });
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new Error(`certificates endpoint answered ${res.status}`);
  }
  const document: unknown = JSON.parse(await readBounded(res, MAX_BODY_BYTES));
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new Error('certificates document is not a JSON object');
  }
  const entries = Object.entries(document);
  if (entries.length === 0 || entries.length > MAX_KEYS) throw new Error('certificates document has no usable key count');
  const keys = new Map<string, CryptoKey>();
  for (const [kid, pem] of entries) {
    if (!KID.test(kid) || typeof pem !== 'string') throw new Error('certificates document has a malformed entry');
    // All or nothing: a half-broken document is not one Google publishes, so none of it is trusted.
    keys.set(kid, await importX509(pem, 'RS256'));
  }
  return { keys, freshUntil: requestedAt + freshnessMs(res.headers) };
}

/** RFC 9111 freshness: max-age minus the Age a cache in between already spent, within our bounds. */
function freshnessMs(headers: Headers): number {
  const cacheControl = headers.get('cache-control') ?? '';
  const maxAge = /(?:^|,)\s*max-age\s*=\s*"?(\d{1,10})"?\s*(?:,|$)/i.exec(cacheControl);
  if (!maxAge || /(?:^|,)\s*no-(?:store|cache)\s*(?:,|=|$)/i.test(cacheControl)) return MIN_FRESH_MS;
  const age = /^\d{1,10}$/.test(headers.get('age') ?? '') ? Number(headers.get('age')) : 0;
  const ms = (Number(maxAge[1]) - age) * 1000;
  return Math.min(MAX_FRESH_MS, Math.max(MIN_FRESH_MS, ms));
}

async function readBounded(res: Response, limit: number): Promise<string> {
  if (Number(res.headers.get('content-length') ?? 0) > limit) {
    await res.body?.cancel();
    throw new Error('certificates document is too large');
  }
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new Error('certificates document is too large');
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
