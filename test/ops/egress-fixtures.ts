import fs from 'node:fs/promises';
import https from 'node:https';
import { isIP, type AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { ensureLocalTls } from '../../src/http/tls/local-ca.js';
import type { EgressPolicy, HostLookup } from '../../src/ops/notify/egress.js';

/** A policy with test-sized limits; nothing internal is open unless `over` opens it. */
export function policy(over: Partial<EgressPolicy> = {}): EgressPolicy {
  return { allowedHosts: [], allowedNetworks: [], timeoutMs: 2000, maxResponseBytes: 1024, ...over };
}

/** A resolver that answers its n-th call with the n-th list (the last one repeats), and records what it was asked. */
export function fakeDns(...answers: string[][]): { lookup: HostLookup; asked: string[] } {
  const asked: string[] = [];
  const lookup: HostLookup = async (host) => {
    asked.push(host);
    const answer = answers[Math.min(asked.length, answers.length) - 1] ?? [];
    return answer.map((address) => ({ address, family: isIP(address) }));
  };
  return { lookup, asked };
}

export interface HookServer {
  port: number;
  /** The CA that signed the server's certificate (for localhost, hooks.example.com, a.example.com, 127.0.0.1). */
  ca: Buffer;
  /** TCP connections accepted, and requests seen as `Host path`. */
  connections: number;
  requests: string[];
}

/** The server's certificate, made once per test file in `dir`. */
export async function hookTls(dir: string): Promise<{ cert: Buffer; key: Buffer; ca: Buffer }> {
  const files = await ensureLocalTls(dir, { hostnames: ['localhost', 'hooks.example.com', 'a.example.com'] });
  const [cert, key, ca] = await Promise.all([files.certFile, files.keyFile, files.caCertFile].map((f) => fs.readFile(f)));
  return { cert: cert!, key: key!, ca: ca! };
}

/**
 * A webhook receiver on 127.0.0.1, closed when the test ends. `/ok` answers, `/redirect` points at
 * the metadata address, `/stall` never answers, `/trickle` sends a byte every 100 ms, `/big` sends
 * 4 KiB, `/close` drops the connection.
 */
export async function startHookServer(t: TestContext, tls: { cert: Buffer; key: Buffer; ca: Buffer }): Promise<HookServer> {
  const timers = new Set<NodeJS.Timeout>();
  const server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    state.requests.push(`${req.headers.host} ${req.url}`);
    if (req.url === '/ok') res.end('ok');
    else if (req.url === '/redirect') res.writeHead(302, { location: 'https://169.254.169.254/latest/meta-data/' }).end();
    else if (req.url === '/trickle') {
      res.writeHead(200);
      timers.add(setInterval(() => res.write('.'), 100));
    } else if (req.url === '/big') res.end(Buffer.alloc(4096, 'a'));
    else if (req.url === '/close') req.socket.destroy();
    // `/stall`: no answer at all.
  });
  const state: HookServer = { port: 0, ca: tls.ca, connections: 0, requests: [] };
  server.on('connection', () => (state.connections += 1));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  t.after(
    () =>
      new Promise<void>((resolve) => {
        timers.forEach(clearInterval);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return state;
}
