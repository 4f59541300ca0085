/**
 * OpenID Connect discovery for the issuers a deployment configures: fetches
 * `<issuer>/.well-known/openid-configuration` over HTTPS, checks it names the same issuer, and
 * hands back its `jwks_uri`. Knows nothing of tokens; `oidc-token.ts` turns its failures into
 * authentication failures.
 */

const DISCOVERY_SUFFIX = '/.well-known/openid-configuration';
/** Real discovery documents and key sets are a few KiB; a hostile endpoint must not fill our memory. */
const MAX_BODY_BYTES = 256 * 1024;
const FETCH_TIMEOUT_MS = 5_000;

/** A discovery or key-set fetch failed; the message names the endpoint problem, never a token. */
export class OidcFetchError extends Error {
  override readonly name = 'OidcFetchError';
}

export interface OidcDiscovery {
  issuer: string;
  jwksUri: URL;
}

/** Parses `raw` and insists on https: keys fetched over plain HTTP could be swapped in transit. */
export function requireHttpsUrl(raw: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new OidcFetchError(`${what} is not a URL`);
  }
  if (url.protocol !== 'https:') throw new OidcFetchError(`${what} must use https`);
  return url;
}

/** OIDC Discovery 1.0 §4: drop a terminating `/` from the issuer, then append the well-known path. */
export function discoveryUrl(issuer: string): URL {
  return requireHttpsUrl(issuer.replace(/\/$/, '') + DISCOVERY_SUFFIX, 'issuer');
}

/**
 * GETs `url` and returns its body, refusing anything but https, a redirect (it could lead off the
 * issuer's host), a status other than 200, or a body over 256 KiB.
 */
export async function fetchBoundedBody(
  fetchImpl: typeof fetch,
  url: string | URL,
  init: { headers?: Headers | Record<string, string>; signal?: AbortSignal } = {},
): Promise<Uint8Array> {
  const target = requireHttpsUrl(String(url), 'endpoint');
  let response: Response;
  try {
    response = await fetchImpl(target, {
      method: 'GET',
      redirect: 'manual',
      headers: init.headers ?? { accept: 'application/json' },
      signal: init.signal ?? AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
  } catch (cause) {
    throw new OidcFetchError(`GET ${target.href} failed`, { cause });
  }
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => undefined);
    throw new OidcFetchError(`GET ${target.href} answered ${response.status}`);
  }
  const declared = Number(response.headers.get('content-length') ?? 0);
  if (declared > MAX_BODY_BYTES) {
    await response.body?.cancel().catch(() => undefined);
    throw new OidcFetchError(`GET ${target.href} body is too large`);
  }
  return readAtMost(response, MAX_BODY_BYTES, target.href);
}

async function readAtMost(response: Response, limit: number, href: string): Promise<Uint8Array> {
  if (!response.body) return new Uint8Array();
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => undefined);
        throw new OidcFetchError(`GET ${href} body is too large`);
      }
      chunks.push(value);
    }
  } catch (cause) {
    if (cause instanceof OidcFetchError) throw cause;
    throw new OidcFetchError(`GET ${href} body could not be read`, { cause });
  }
  return Buffer.concat(chunks);
}

/** Fetches and checks one issuer's discovery document. */
export async function fetchOidcDiscovery(issuer: string, fetchImpl: typeof fetch): Promise<OidcDiscovery> {
  const body = await fetchBoundedBody(fetchImpl, discoveryUrl(issuer));
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    throw new OidcFetchError(`the discovery document of ${issuer} is not JSON`);
  }
  if (typeof doc !== 'object' || doc === null) {
    throw new OidcFetchError(`the discovery document of ${issuer} is not an object`);
  }
  const { issuer: named, jwks_uri: jwksUri } = doc as Record<string, unknown>;
  // OIDC Discovery §4.3: a document naming another issuer could steer us to someone else's keys.
  if (named !== issuer) throw new OidcFetchError(`the discovery document of ${issuer} names another issuer`);
  if (typeof jwksUri !== 'string') throw new OidcFetchError(`the discovery document of ${issuer} has no jwks_uri`);
  return { issuer, jwksUri: requireHttpsUrl(jwksUri, `jwks_uri of ${issuer}`) };
}

export interface DiscoveryCacheOptions {
  fetch: typeof fetch;
  now: () => number;
  /** How long a fetched document is used before it is fetched again. */
  maxAgeMs: number;
  /** After a failure, how long to wait before asking the issuer again. */
  retryAfterMs: number;
}

interface CacheEntry {
  doc?: OidcDiscovery;
  fetchedAt: number;
  failedAt?: number;
  pending?: Promise<OidcDiscovery>;
}

/**
 * Discovery documents per issuer. Keys are configured issuers only (callers check before asking),
 * so the cache stays as small as the configuration. A failed refresh keeps the last good document:
 * an issuer's brief outage must not lock every user out while its keys are still valid.
 */
export function createDiscoveryCache(opts: DiscoveryCacheOptions): { get(issuer: string): Promise<OidcDiscovery> } {
  const entries = new Map<string, CacheEntry>();

  async function get(issuer: string): Promise<OidcDiscovery> {
    let entry = entries.get(issuer);
    if (!entry) {
      entry = { fetchedAt: Number.NEGATIVE_INFINITY };
      entries.set(issuer, entry);
    }
    const now = opts.now();
    if (entry.doc && now - entry.fetchedAt < opts.maxAgeMs) return entry.doc;
    // Anyone can forge a token naming a configured issuer: without this pause, an issuer outage
    // would turn every such token into an outbound request.
    if (entry.failedAt !== undefined && now - entry.failedAt < opts.retryAfterMs) {
      if (entry.doc) return entry.doc;
      throw new OidcFetchError(`discovery for ${issuer} failed recently; not retrying yet`);
    }
    const current = entry;
    current.pending ??= fetchOidcDiscovery(issuer, opts.fetch)
      .then(
        (doc) => {
          current.doc = doc;
          current.fetchedAt = opts.now();
          current.failedAt = undefined;
          return doc;
        },
        (err: unknown) => {
          current.failedAt = opts.now();
          throw err;
        },
      )
      .finally(() => {
        current.pending = undefined;
      });
    try {
      return await current.pending;
    } catch (err) {
      if (current.doc) return current.doc;
      throw err;
    }
  }

  return { get };
}
