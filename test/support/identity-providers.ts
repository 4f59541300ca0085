// Identity providers for API tests: a local OIDC issuer (discovery + JWKS over TLS from a local
// CA) and Google's x509 certificate endpoint for Firebase ID tokens, with signers for both.
import { rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { createSigningKey, signToken as signFirebase, type SigningKey } from '../identity/google-certs-server.js';
import { createLocalPki, signToken as signOidc, startTestIssuer } from '../identity/oidc-issuer-fixture.js';

export const PROJECT = 'demo-strongroom';
export const AUDIENCE = 'strongroom-api';

export interface IdentityProviders {
  /** The OIDC issuer's URL (its `iss`). */
  issuer: string;
  firebaseIssuer: string;
  /** The key whose certificate the Firebase endpoint publishes, for tests that forge around it. */
  firebaseKey: SigningKey;
  /** Configuration for a harness that trusts both providers (and `extraIssuers`). */
  env(extraIssuers?: string[]): Record<string, string>;
  /** A signed token valid at `atMs` (now unless given: a test that moves the server's clock passes its own); `claims` override or add to the defaults. */
  oidcToken(claims: Record<string, unknown>, atMs?: number): Promise<string>;
  firebaseToken(claims: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

const now = () => Math.floor(Date.now() / 1000);

export async function startIdentityProviders(): Promise<IdentityProviders> {
  const cleanups: (() => unknown)[] = [];
  // The issuer fixture registers its own cleanup on a TestContext; these run at close().
  const context = { after: (fn: () => unknown) => cleanups.push(fn) } as unknown as TestContext;
  const pki = await createLocalPki();
  cleanups.push(() => pki.remove());
  const issuer = await startTestIssuer(context, pki);
  const oidcKey = await issuer.addKey('RS256');
  const firebaseKey = await createSigningKey();
  // Google's x509 metadata format, served over TLS from the same local CA.
  const certsServer = createServer({ cert: pki.certPem, key: pki.keyPem }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=3600' });
    res.end(JSON.stringify({ [firebaseKey.kid]: firebaseKey.certPem }));
  });
  await new Promise<void>((resolve) => certsServer.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => certsServer.close(resolve)));
  const certsUrl = `https://localhost:${(certsServer.address() as { port: number }).port}/certs`;
  const caFile = join(tmpdir(), `strongroom-idp-ca-${process.pid}-${Date.now()}.pem`);
  writeFileSync(caFile, pki.caPem);
  cleanups.push(() => rmSync(caFile, { force: true }));
  const firebaseIssuer = `https://securetoken.google.com/${PROJECT}`;
  return {
    issuer: issuer.issuer,
    firebaseIssuer,
    firebaseKey,
    env: (extraIssuers = []) => ({
      STRONGROOM_AUTH__OIDC__ISSUERS: JSON.stringify([issuer.issuer, ...extraIssuers].map((iss) => ({ issuer: iss, audiences: [AUDIENCE] }))),
      STRONGROOM_AUTH__FIREBASE__PROJECT_ID: PROJECT,
      STRONGROOM_AUTH__FIREBASE__CERTS_URL: certsUrl,
      STRONGROOM_AUTH__CA_FILE: caFile,
    }),
    oidcToken: (claims, atMs = Date.now()) => {
      const seconds = Math.floor(atMs / 1000);
      return signOidc(oidcKey, { iss: issuer.issuer, aud: AUDIENCE, iat: seconds - 5, exp: seconds + 300, ...claims });
    },
    firebaseToken: (claims) =>
      signFirebase(firebaseKey, { iss: firebaseIssuer, aud: PROJECT, iat: now() - 5, auth_time: now() - 60, exp: now() + 300, ...claims }),
    async close() {
      for (const fn of cleanups.reverse()) await fn();
    },
  };
}
