import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK, type JWTPayload, type JWTHeaderParameters } from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import { ensureLocalTls } from '../../src/http/tls/local-ca.js';

/** A local CA and a server certificate for localhost, made once per test file. */
export interface LocalPki {
  caPem: string;
  certPem: string;
  keyPem: string;
  remove(): Promise<void>;
}

export async function createLocalPki(): Promise<LocalPki> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'strongroom-oidc-'));
  const files = await ensureLocalTls(path.join(dir, 'tls'), { hostnames: ['localhost'] });
  const [caPem, certPem, keyPem] = await Promise.all(
    [files.caCertFile, files.certFile, files.keyFile].map((file) => fs.readFile(file, 'utf8')),
  );
  return { caPem: caPem!, certPem: certPem!, keyPem: keyPem!, remove: () => fs.rm(dir, { recursive: true, force: true }) };
}

/** Every request any test issuer received, in order, so a test can prove that none was made. */
export const allIssuerRequests: string[] = [];

export interface SigningKey {
  alg: 'RS256' | 'ES256';
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
}

/** A Keycloak-like issuer on https://localhost:<port>/realms/<realm>, with mutable discovery and JWKS. */
export interface TestIssuer {
  issuer: string;
  origin: string;
  jwksPath: string;
  /** Paths this server was asked for. */
  requests: string[];
  /** Served as the discovery document; tests may change it. */
  discovery: Record<string, unknown>;
  /** Served as the JWKS; tests may change it. */
  jwks: { keys: JWK[] };
  /** Overrides the discovery answer: status and headers (e.g. a redirect). */
  discoveryResponse?: { status: number; headers?: Record<string, string> };
  /** Makes a key pair; published in the JWKS unless `publish` is false. */
  addKey(alg: 'RS256' | 'ES256', opts?: { publish?: boolean; kid?: string }): Promise<SigningKey>;
}

export async function startTestIssuer(t: TestContext, pki: LocalPki, realm = 'test'): Promise<TestIssuer> {
  const realmPath = `/realms/${realm}`;
  const jwksPath = `${realmPath}/protocol/openid-connect/certs`;
  const state = {
    requests: [] as string[],
    discovery: {} as Record<string, unknown>,
    jwks: { keys: [] as JWK[] },
    discoveryResponse: undefined as TestIssuer['discoveryResponse'],
  };
  const server = https.createServer({ cert: pki.certPem, key: pki.keyPem }, (req, res) => {
    const url = req.url ?? '/';
    state.requests.push(url);
    allIssuerRequests.push(url);
    if (url === `${realmPath}/.well-known/openid-configuration`) {
      if (fixture.discoveryResponse) {
        res.writeHead(fixture.discoveryResponse.status, fixture.discoveryResponse.headers ?? {});
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(fixture.discovery));
    } else if (url === jwksPath) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(fixture.jwks));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  const origin = `https://localhost:${(server.address() as AddressInfo).port}`;
  const issuer = `${origin}${realmPath}`;
  state.discovery = {
    issuer,
    authorization_endpoint: `${issuer}/protocol/openid-connect/auth`,
    token_endpoint: `${issuer}/protocol/openid-connect/token`,
    jwks_uri: `${origin}${jwksPath}`,
    id_token_signing_alg_values_supported: ['RS256', 'ES256'],
  };
  const fixture: TestIssuer = {
    issuer,
    origin,
    jwksPath,
    requests: state.requests,
    discovery: state.discovery,
    jwks: state.jwks,
    async addKey(alg, opts = {}) {
      const { privateKey, publicKey } = await generateKeyPair(alg);
      const kid = opts.kid ?? randomUUID();
      const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
      if (opts.publish !== false) fixture.jwks.keys.push(publicJwk);
      return { alg, kid, privateKey, publicKey, publicJwk };
    },
  };
  return fixture;
}

/** Signs `claims` with `key`; `header` overrides the protected header. */
export function signToken(key: SigningKey, claims: JWTPayload, header: Partial<JWTHeaderParameters> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
}

/** A fetch that trusts only the local CA, recording every URL it is asked for. */
export function trustingFetch(t: TestContext, pki: LocalPki): { fetch: typeof fetch; urls: string[] } {
  const agent = new Agent({ connect: { ca: pki.caPem } });
  t.after(() => agent.close());
  const urls: string[] = [];
  const impl = (input: string | URL, init?: Parameters<typeof undiciFetch>[1]) => {
    urls.push(String(input));
    return undiciFetch(input, { ...init, dispatcher: agent });
  };
  return { fetch: impl as unknown as typeof fetch, urls };
}
