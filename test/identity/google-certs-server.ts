// A stand-in for Google's securetoken x509 metadata endpoint: real HTTPS (a local CA from
// ensureLocalTls), real RSA keys and self-signed certificates, the same JSON shape and Cache-Control.
import { randomBytes, webcrypto } from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import { ensureLocalTls } from '../../src/http/tls/local-ca.js';
import { x509 } from '../../src/http/tls/x509.js';
import { tempDir } from '../http/tls-fixtures.js';

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  certPem: string;
}

const RS256_KEY = { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' } as const;

/** An RS256 key pair and a self-signed certificate for its public key, under a Google-style 40-hex kid. */
export async function createSigningKey(): Promise<SigningKey> {
  const keys = await webcrypto.subtle.generateKey(RS256_KEY, true, ['sign', 'verify']);
  const notBefore = new Date(Date.now() - 3600_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=securetoken.system.gserviceaccount.com',
    notBefore,
    notAfter: new Date(notBefore.getTime() + 14 * 86_400_000),
    signingAlgorithm: RS256_KEY,
    keys,
  });
  return { kid: randomBytes(20).toString('hex'), privateKey: keys.privateKey as CryptoKey, certPem: cert.toString('pem') };
}

/** A compact RS256 JWS of `claims` with the given header fields (alg RS256 and the key's kid unless overridden). */
export function signToken(key: SigningKey, claims: JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
}

export interface Publication {
  keys?: SigningKey[];
  /** Sent as `Cache-Control: public, max-age=N, must-revalidate, no-transform` (Google's form); null sends none. */
  maxAge?: number | null;
  status?: number;
  /** Replaces the JSON document. */
  body?: string;
}

export interface CertsServer {
  url: string;
  /** A fetch that trusts the server's local CA, for the verifier's `fetch` option. */
  fetch: typeof fetch;
  /** Requests the endpoint has answered so far. */
  requests(): number;
  publish(publication: Publication): void;
}

/** Starts the endpoint on 127.0.0.1; it, and the client's connection pool, close when the test ends. */
export async function startCertsServer(t: TestContext, initial: Publication): Promise<CertsServer> {
  const tls = await ensureLocalTls(await tempDir(t), { hostnames: ['localhost'] });
  let publication = initial;
  let requests = 0;
  const server = https.createServer(
    { cert: await fs.readFile(tls.certFile), key: await fs.readFile(tls.keyFile) },
    (_req, res) => {
      requests += 1;
      const { keys = [], maxAge = 3600, status = 200, body } = publication;
      const headers: Record<string, string> = { 'content-type': 'application/json; charset=UTF-8' };
      if (maxAge !== null) headers['cache-control'] = `public, max-age=${maxAge}, must-revalidate, no-transform`;
      res.writeHead(status, headers);
      res.end(body ?? JSON.stringify(Object.fromEntries(keys.map((key) => [key.kid, key.certPem]))));
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const agent = new Agent({ connect: { ca: await fs.readFile(tls.caCertFile, 'utf8') } });
  t.after(async () => {
    await agent.close();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  });
  const trustingFetch = ((input: string, init?: RequestInit) =>
    undiciFetch(input, { ...(init as object), dispatcher: agent })) as unknown as typeof fetch;
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com`,
    fetch: trustingFetch,
    requests: () => requests,
    publish(next) {
      publication = next;
    },
  };
}
