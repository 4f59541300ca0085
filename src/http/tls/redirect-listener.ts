import http from 'node:http';
import { isIPv6 } from 'node:net';
import type { Duplex } from 'node:stream';
import { ConfigError } from '../../errors.js';

/**
 * The optional plain-HTTP listener. It answers every request with a 308 to the HTTPS URL and
 * nothing else: no route, no body read, no data (invariant 6: the API never answers over plain
 * HTTP). It is plain node:http so that no framework hook can ever serve a page on it.
 */
export interface RedirectListenerOptions {
  host: string;
  port: number;
  httpsPort: number;
  /** When set, every Location uses this host and the request's Host header is ignored. */
  publicHost?: string;
}

export interface RedirectListener {
  server: http.Server;
  port: number;
  close(): Promise<void>;
}

const HOSTNAME =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;
/** `name`, `name:port`, `[v6]` or `[v6]:port`; the port is replaced, so only its form is checked. */
const HOST_HEADER = /^(?:([^[\]:]+)|\[([0-9a-f:.]+)\])(?::\d{1,5})?$/i;
/** Printable ASCII only: no CR/LF (header injection), no space, nothing that needs re-encoding. */
const SAFE_PATH = /^\/[\x21-\x7e]*$/;
const MAX_PATH = 8192;

/**
 * @example
 * const redirect = await startRedirectListener({ host: '0.0.0.0', port: 80, httpsPort: 443, publicHost: 'data.example.com' });
 */
export async function startRedirectListener(opts: RedirectListenerOptions): Promise<RedirectListener> {
  checkPort('server.httpPort', opts.port, true);
  checkPort('server.port', opts.httpsPort, false);
  const publicHost = opts.publicHost === undefined ? undefined : validHost(opts.publicHost);
  if (opts.publicHost !== undefined && publicHost === undefined) {
    throw new ConfigError('server.publicHost', `${JSON.stringify(opts.publicHost)} is not a host name`);
  }
  const location = (hostHeader: string | undefined, url: string | undefined) => {
    const host = publicHost ?? hostFromHeader(hostHeader) ?? 'localhost';
    const port = opts.httpsPort === 443 ? '' : `:${opts.httpsPort}`;
    return `https://${host}${port}${safePath(url)}`;
  };

  const server = http.createServer(
    {
      // Without this, node answers 400 to an HTTP/1.1 request that lacks Host; we redirect it too.
      requireHostHeader: false,
      headersTimeout: 10_000,
      requestTimeout: 10_000,
      keepAliveTimeout: 1_000,
    },
    (req, res) => {
      // The body is never read: the response goes out at once and the connection closes.
      res.writeHead(308, {
        Location: location(req.headers.host, req.url),
        'Content-Length': '0',
        Connection: 'close',
      });
      res.end();
    },
  );
  server.maxRequestsPerSocket = 1;
  // CONNECT (and upgrades, when a listener exists) bypass the request handler: answer them the same.
  const rawRedirect = (req: http.IncomingMessage, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    socket.end(
      `HTTP/1.1 308 Permanent Redirect\r\nLocation: ${location(req.headers.host, req.url)}\r\n` +
        'Content-Length: 0\r\nConnection: close\r\n\r\n',
    );
  };
  server.on('connect', rawRedirect);
  server.on('upgrade', rawRedirect);

  return await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : opts.port;
      resolve({
        server,
        port,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** The host part of a Host header if it is a plain host name or a bracketed IPv6 address. */
function hostFromHeader(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const match = HOST_HEADER.exec(value);
  if (!match) return undefined;
  const [, name, v6] = match;
  return validHost(name ?? `[${v6 ?? ''}]`);
}

/** A host name, IPv4 address or bracketed IPv6 address, lower-cased; undefined for anything else. */
function validHost(host: string): string | undefined {
  if (host.startsWith('[') && host.endsWith(']')) {
    const v6 = host.slice(1, -1);
    return isIPv6(v6) ? host.toLowerCase() : undefined;
  }
  return HOSTNAME.test(host) ? host.toLowerCase() : undefined;
}

/** The request path if it is origin-form printable ASCII; anything else goes to the root. */
function safePath(url: string | undefined): string {
  return url !== undefined && url.length <= MAX_PATH && SAFE_PATH.test(url) ? url : '/';
}

function checkPort(key: string, port: number, zeroAllowed: boolean): void {
  if (!Number.isInteger(port) || port < (zeroAllowed ? 0 : 1) || port > 65535) {
    throw new ConfigError(key, `${port} is not a port number`);
  }
}
