// The gcp provider opened from configuration alone (key ring, service-account key file, API endpoint),
// as a deployment opens it: TLS to the fake Cloud KMS under a test CA, and the client library's own
// credentials, which the fake verifies on every call. Google Cloud is not reachable from here.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ensureLocalTls } from '../../src/http/tls/local-ca.js';
import { startGcpFakeServer } from './gcp-fake-server.js';

const folder = mkdtempSync(join(tmpdir(), 'strongroom-gcp-configured-'));
after(() => rmSync(folder, { recursive: true, force: true }));

const CHILD = fileURLToPath(new URL('./gcp-configured-child.js', import.meta.url));
const EMAIL = 'strongroom@strongroom-test.iam.gserviceaccount.com';

/** A service-account key file as the Cloud console issues it, for a key pair made here. */
function serviceAccountFile(name: string): { file: string; publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const file = join(folder, name);
  const key = {
    type: 'service_account',
    project_id: 'strongroom-test',
    private_key_id: randomBytes(20).toString('hex'),
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: EMAIL,
    client_id: '100000000000000000001',
    // Loopback: if the library ever fetched an OAuth token instead of signing its own JWT, it would not leave the machine.
    token_uri: 'https://127.0.0.1:9/token',
    universe_domain: 'googleapis.com',
  };
  writeFileSync(file, JSON.stringify(key), { mode: 0o600 });
  return { file, publicKey };
}

async function runConfigured(config: Record<string, unknown>, caCertFile: string): Promise<Record<string, unknown>> {
  const { stdout } = await promisify(execFile)(process.execPath, [CHILD], {
    env: {
      PATH: process.env.PATH,
      NODE_EXTRA_CA_CERTS: caCertFile,
      // No probing for a GCE metadata server: nothing here may reach beyond loopback.
      METADATA_SERVER_DETECTION: 'none',
      STRONGROOM_TEST_GCP_CONFIG: JSON.stringify(config),
    },
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
}

describe('gcp KMS configured as in production', () => {
  it('authenticates every call with a JWT signed by the service-account key file, over TLS to the configured endpoint', async () => {
    const tls = await ensureLocalTls(join(folder, 'tls'), { hostnames: ['localhost'] });
    const account = serviceAccountFile('service-account.json');
    const server = await startGcpFakeServer({ tls, serviceAccount: { email: EMAIL, publicKey: account.publicKey } });
    try {
      const config = { keyRing: server.keyRing, credentialsFile: account.file, apiEndpoint: `127.0.0.1:${server.port}` };
      const result = await runConfigured(config, tls.caCertFile);
      assert.deepEqual(result, { roundTrip: true, health: { ok: true, provider: 'gcp', detail: `key ring ${server.keyRing} reachable` } });
      assert.deepEqual(
        server.calls.map((call) => call.method),
        ['CreateCryptoKey', 'Encrypt', 'Decrypt', 'GetKeyRing'],
      );
      assert.ok(server.calls.every((call) => String(call.metadata.get('authorization')[0]).startsWith('Bearer ')));
      assert.ok(server.calls.every((call) => /gl-node\/\S+ .*grpc\//.test(String(call.metadata.get('x-goog-api-client')[0]))));

      // Another account's key: Cloud KMS says UNAUTHENTICATED, and the provider names the setting to fix.
      const stranger = serviceAccountFile('stranger.json');
      assert.deepEqual(await runConfigured({ ...config, credentialsFile: stranger.file }, tls.caCertFile), {
        error: 'invalid_config',
        key: 'kms.gcp.credentialsFile',
      });
      assert.deepEqual(server.violations, []);
    } finally {
      server.stop();
    }
  });
});
