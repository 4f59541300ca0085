import fs from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { TestContext } from 'node:test';
import { secureContextOptions, type CertificatePem } from '../../src/http/tls/tls-policy.js';

/** A fresh temporary folder, removed when the test ends. */
export async function tempDir(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'strongroom-tls-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface RunningHttps {
  server: https.Server;
  port: number;
  /** Errors the server saw during handshakes, so a test can tell a server-side refusal. */
  handshakeErrors: Error[];
}

/** An HTTPS server on 127.0.0.1 with the product's TLS policy, closed when the test ends. */
export async function startHttps(t: TestContext, pem: CertificatePem): Promise<RunningHttps> {
  const server = https.createServer(secureContextOptions(pem), (_req, res) => res.end('ok'));
  const handshakeErrors: Error[] = [];
  server.on('tlsClientError', (err) => handshakeErrors.push(err));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return { server, port: (server.address() as AddressInfo).port, handshakeErrors };
}

export interface Handshake {
  protocol: string | null;
  cipher: string;
  fingerprint256: string;
  serialNumber: string;
}

/** Completes a TLS handshake with 127.0.0.1:port as `localhost` and describes it. */
export function handshake(port: number, options: tls.ConnectionOptions = {}): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...options }, () => {
      const peer = socket.getPeerCertificate();
      resolve({
        protocol: socket.getProtocol(),
        cipher: socket.getCipher().name,
        fingerprint256: peer.fingerprint256,
        serialNumber: peer.serialNumber,
      });
      socket.end();
    });
    socket.on('error', reject);
  });
}
