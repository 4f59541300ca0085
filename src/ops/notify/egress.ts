import type { LookupAddress } from 'node:dns';
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { rootCertificates } from 'node:tls';
import { Agent, request } from 'undici';
import { EgressDeniedError, EgressFailedError, StrongroomError } from '../../errors.js';
import { allowedNetworks, refusalOf } from './egress-address.js';

/** Resolves a host name to all its addresses, as `dns.lookup(host, { all: true })` does. */
export type HostLookup = (host: string) => Promise<LookupAddress[]>;

/** Where outbound connections may go: `config.egress`, and optionally the resolver to use. */
export interface EgressPolicy {
  /** `hooks.example.com` (exactly) or `*.example.com` (its subdomains at any depth, not example.com); empty: any host. */
  allowedHosts: string[];
  /** CIDR ranges opened although internal, e.g. a relay's `10.20.0.5/32`; metadata addresses only by an exact /32 or /128. */
  allowedNetworks: string[];
  /** The whole exchange (connect, TLS, headers, body) must end within this. */
  timeoutMs: number;
  /** A longer response body fails the request. */
  maxResponseBytes: number;
  /** Default: the system resolver. Tests pass their own to play DNS rebinding. */
  lookup?: HostLookup;
}

/** An address outbound traffic may be sent to. */
export interface EgressAddress {
  address: string;
  family: 4 | 6;
}

/** The answer to an outbound request. A 3xx is returned as it is: redirects are never followed. */
export interface EgressResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** An outbound request. `ca` adds certificates to the system's trusted roots (a private CA, or a test's). */
export interface EgressRequestInit {
  method: 'POST' | 'GET';
  headers: Record<string, string>;
  body?: string | Buffer;
  ca?: Buffer[];
}

const systemLookup: HostLookup = (host) => dnsLookup(host, { all: true });

/** Letters, digits, `-` and `_` in dot-separated labels: anything else is not a name DNS should be asked about. */
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/**
 * Checks `host` against `allowedHosts`, resolves it (an IP literal, bracketed IPv6 included, is taken
 * as it is) and returns its addresses, or throws `EgressDeniedError` if any of them is internal and
 * not opened by `allowedNetworks`.
 *
 * @example
 * await resolveAllowed(config.egress, 'hooks.example.com') // [{ address: '93.184.215.14', family: 4 }]
 */
export async function resolveAllowed(policy: EgressPolicy, host: string): Promise<EgressAddress[]> {
  const name = allowedHostName(policy.allowedHosts, host);
  const allowed = allowedNetworks(policy.allowedNetworks);
  const found = isIP(name) ? [{ address: name }] : await resolveName(policy.lookup ?? systemLookup, name);
  // Every address is judged, not only the first: the socket may fall back to any of them.
  for (const { address } of found) {
    const refusal = refusalOf(address, allowed);
    if (refusal !== undefined) throw new EgressDeniedError(name, refusal);
  }
  return found.map(({ address }) => ({ address, family: isIP(address) === 6 ? 6 : 4 }));
}

/**
 * The address an SMTP client must connect to for `host`, judged as `resolveAllowed` does. Connect
 * to this address (with `servername: host`, so TLS still verifies the name), not to the name again:
 * a second resolution could give another answer.
 *
 * @example
 * const address = await checkSmtpHost(config.egress, 'smtp.example.com');
 */
export async function checkSmtpHost(policy: EgressPolicy, host: string): Promise<string> {
  const [first] = await resolveAllowed(policy, host);
  return first!.address;
}

/**
 * Sends one HTTPS request where the egress policy allows it. The certificate is verified against
 * the URL's host name; redirects are not followed; the whole exchange must end within `timeoutMs`
 * and the body must fit in `maxResponseBytes`. Throws `EgressDeniedError` (never retry) or
 * `EgressFailedError` (a later attempt may pass). Error messages name the host, never the URL.
 *
 * @example
 * const res = await egressRequest(config.egress, url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
 */
export async function egressRequest(policy: EgressPolicy, url: string, init: EgressRequestInit): Promise<EgressResponse> {
  const target = httpsTarget(url);
  // Refuses early, before any socket exists; the connect-time lookup below judges names again.
  await resolveAllowed(policy, target.hostname);
  const agent = new Agent({
    connect: {
      // DNS rebinding: the socket connects only to addresses judged at connect time, not to a later answer.
      lookup: judgingLookup(policy),
      ca: init.ca ? [...rootCertificates, ...init.ca] : undefined,
      timeout: policy.timeoutMs,
    },
    headersTimeout: policy.timeoutMs,
    bodyTimeout: policy.timeoutMs,
    maxResponseSize: policy.maxResponseBytes,
  });
  try {
    // undici's request follows no redirect: a 3xx to an internal address comes back as a 3xx.
    const response = await request(target, {
      dispatcher: agent,
      method: init.method,
      headers: init.headers,
      body: init.body,
      // A server trickling a byte per interval would otherwise hold the delivery open indefinitely.
      signal: AbortSignal.timeout(policy.timeoutMs),
    });
    const body = Buffer.from(await response.body.arrayBuffer());
    return { status: response.statusCode, headers: response.headers, body };
  } catch (err) {
    throw egressError(err, target.hostname, policy);
  } finally {
    await agent.destroy();
  }
}

function httpsTarget(url: string): URL {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new EgressDeniedError(null, 'the URL is not valid');
  }
  // Plain HTTP would let anyone on the path read and change the delivery; other schemes reach other services.
  if (target.protocol !== 'https:') throw new EgressDeniedError(target.hostname || null, `only https: URLs are allowed, not ${target.protocol}`);
  // Credentials in a URL end up in logs and error reports; webhooks authenticate with a signature header.
  if (target.username !== '' || target.password !== '') throw new EgressDeniedError(target.hostname, 'credentials in the URL are refused');
  return target;
}

function allowedHostName(allowedHosts: string[], host: string): string {
  const name = host.replace(/^\[(.*)\]$/, '$1').toLowerCase().replace(/\.$/, '');
  if (isIP(name) === 0 && !HOST_NAME.test(name)) throw new EgressDeniedError(JSON.stringify(host.slice(0, 255)), 'not a host name');
  const listed = (pattern: string) => {
    const p = pattern.toLowerCase();
    return p.startsWith('*.') ? name.endsWith(p.slice(1)) : name === p;
  };
  if (allowedHosts.length > 0 && !allowedHosts.some(listed)) throw new EgressDeniedError(name, 'not in egress.allowedHosts');
  return name;
}

async function resolveName(lookup: HostLookup, name: string): Promise<LookupAddress[]> {
  let found: LookupAddress[];
  try {
    found = await lookup(name);
  } catch (err) {
    throw new EgressFailedError(name, 'dns', `the name does not resolve (${errorCode(err)})`);
  }
  if (found.length === 0) throw new EgressFailedError(name, 'dns', 'the name has no address');
  return found;
}

/** net's `lookup` option, answering only with addresses `resolveAllowed` accepts. */
function judgingLookup(policy: EgressPolicy): LookupFunction {
  return (hostname, options, callback) => {
    resolveAllowed(policy, hostname).then(
      (addresses) => {
        const [first] = addresses;
        if (options.all) callback(null, addresses);
        else callback(null, first!.address, first!.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, ''),
    );
  };
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Our own errors pass through; undici's become an `EgressFailedError` that names only the host and an error code (its messages may quote the address). */
function egressError(err: unknown, host: string, policy: EgressPolicy): StrongroomError {
  if (err instanceof StrongroomError) return err;
  const code = errorCode(err);
  if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') {
    return new EgressFailedError(host, 'too_large', `the response is longer than ${policy.maxResponseBytes} bytes`);
  }
  if (TIMEOUT_CODES.has(code) || (err instanceof Error && err.name === 'TimeoutError')) {
    return new EgressFailedError(host, 'timeout', `no complete response within ${policy.timeoutMs} ms`);
  }
  return new EgressFailedError(host, 'connection', `the connection failed (${code})`);
}

function errorCode(err: unknown): string {
  const { code, name } = (err ?? {}) as { code?: unknown; name?: unknown };
  return typeof code === 'string' ? code : typeof name === 'string' ? name : 'unknown error';
}
