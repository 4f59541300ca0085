import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, IntegrityError } from '../../src/errors.js';
import { ensureLocalTls } from '../../src/http/tls/local-ca.js';
import { x509 } from '../../src/http/tls/x509.js';
import { tempDir } from './tls-fixtures.js';

const DAY_MS = 86_400_000;

async function mode(file: string): Promise<number> {
  return (await fs.stat(file)).mode & 0o777;
}

async function certAt(file: string): Promise<X509Certificate> {
  return new X509Certificate(await fs.readFile(file));
}

describe('ensureLocalTls', () => {
  test('creates a private folder holding a CA and a server certificate with the documented modes', async (t) => {
    const dir = path.join(await tempDir(t), 'tls');
    const files = await ensureLocalTls(dir, { hostnames: ['localhost'] });

    assert.equal(await mode(dir), 0o700);
    assert.equal(await mode(files.caCertFile), 0o644);
    assert.equal(await mode(path.join(dir, 'ca-key.pem')), 0o600);
    assert.equal(await mode(files.certFile), 0o600);
    assert.equal(await mode(files.keyFile), 0o600);
    assert.deepEqual((await fs.readdir(dir)).sort(), ['ca-cert.pem', 'ca-key.pem', 'server-cert.pem', 'server-key.pem']);
  });

  test('the CA is a P-256 root limited to signing end-entity certificates', async (t) => {
    const dir = await tempDir(t);
    const files = await ensureLocalTls(dir, { hostnames: ['localhost'] });
    const ca = new x509.X509Certificate(await fs.readFile(files.caCertFile));
    const caKeyPem = await fs.readFile(path.join(dir, 'ca-key.pem'), 'utf8');

    assert.match(ca.subject, /^CN=Strongroom local CA [0-9a-f]{12}$/);
    assert.equal(ca.subject, ca.issuer);
    const constraints = ca.getExtension(x509.BasicConstraintsExtension);
    assert.equal(constraints?.ca, true);
    assert.equal(constraints?.pathLength, 0);
    assert.equal(constraints?.critical, true);
    const usage = ca.getExtension(x509.KeyUsagesExtension);
    assert.equal(usage?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    assert.ok(ca.notAfter.getTime() - ca.notBefore.getTime() >= 3649 * DAY_MS);
    assert.match(caKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.equal(createPrivateKey(caKeyPem).asymmetricKeyDetails?.namedCurve, 'prime256v1');
  });

  test('the server certificate is signed by the CA and names every requested host and loopback', async (t) => {
    const dir = await tempDir(t);
    const files = await ensureLocalTls(dir, { hostnames: ['localhost', 'API.Example.test', '192.0.2.7'] });
    const ca = await certAt(files.caCertFile);
    const server = await certAt(files.certFile);
    const parsed = new x509.X509Certificate(server.raw);
    const serverKeyPem = await fs.readFile(files.keyFile, 'utf8');

    assert.equal(server.verify(ca.publicKey), true);
    assert.equal(server.checkIssued(ca), true);
    assert.equal(server.checkPrivateKey(createPrivateKey(serverKeyPem)), true);
    assert.match(serverKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.equal(server.ca, false);
    assert.equal(parsed.getExtension(x509.BasicConstraintsExtension)?.ca, false);
    assert.equal(parsed.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
    assert.deepEqual(server.keyUsage, ['1.3.6.1.5.5.7.3.1']); // extKeyUsage serverAuth only
    assert.equal(
      server.subjectAltName,
      'DNS:localhost, DNS:api.example.test, IP Address:192.0.2.7, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    assert.ok(Date.parse(server.validTo) - Date.parse(server.validFrom) <= 397 * DAY_MS);
  });

  test('a second call reuses the same CA and server files', async (t) => {
    const dir = await tempDir(t);
    const first = await ensureLocalTls(dir, { hostnames: ['localhost'] });
    const before = await Promise.all(
      ['ca-cert.pem', 'ca-key.pem', 'server-cert.pem', 'server-key.pem'].map((f) => fs.readFile(path.join(dir, f))),
    );
    const second = await ensureLocalTls(dir, { hostnames: ['localhost'] });
    const after = await Promise.all(
      ['ca-cert.pem', 'ca-key.pem', 'server-cert.pem', 'server-key.pem'].map((f) => fs.readFile(path.join(dir, f))),
    );

    assert.deepEqual(second, first);
    assert.deepEqual(after, before);
  });

  test('a new hostname reissues the server certificate under the same CA', async (t) => {
    const dir = await tempDir(t);
    const files = await ensureLocalTls(dir, { hostnames: ['localhost'] });
    const caBefore = await fs.readFile(files.caCertFile);
    const serverBefore = await certAt(files.certFile);

    await ensureLocalTls(dir, { hostnames: ['localhost', 'data.example.test'] });
    const serverAfter = await certAt(files.certFile);

    assert.deepEqual(await fs.readFile(files.caCertFile), caBefore);
    assert.notEqual(serverAfter.serialNumber, serverBefore.serialNumber);
    assert.equal(serverAfter.checkHost('data.example.test'), 'data.example.test');
    assert.equal(serverAfter.verify((await certAt(files.caCertFile)).publicKey), true);
  });

  test('a server certificate within 30 days of expiry is reissued; the CA is kept', async (t) => {
    const dir = await tempDir(t);
    const files = await ensureLocalTls(dir, { hostnames: ['localhost'] });
    const caBefore = await fs.readFile(files.caCertFile);
    const serverBefore = await certAt(files.certFile);

    const at340Days = new Date(Date.now() + 340 * DAY_MS);
    await ensureLocalTls(dir, { hostnames: ['localhost'], clock: () => at340Days });
    assert.equal((await certAt(files.certFile)).serialNumber, serverBefore.serialNumber, 'still 57 days left');

    const at370Days = new Date(Date.now() + 370 * DAY_MS);
    await ensureLocalTls(dir, { hostnames: ['localhost'], clock: () => at370Days });
    const serverAfter = await certAt(files.certFile);
    assert.notEqual(serverAfter.serialNumber, serverBefore.serialNumber);
    assert.ok(Date.parse(serverAfter.validTo) > at370Days.getTime() + 300 * DAY_MS);
    assert.deepEqual(await fs.readFile(files.caCertFile), caBefore);
  });

  test('a CA within 30 days of expiry is replaced by a new one', async (t) => {
    const dir = await tempDir(t);
    const files = await ensureLocalTls(dir, { hostnames: ['localhost'] });
    const caBefore = await certAt(files.caCertFile);

    const nearCaExpiry = new Date(Date.parse(caBefore.validTo) - 10 * DAY_MS);
    await ensureLocalTls(dir, { hostnames: ['localhost'], clock: () => nearCaExpiry });
    const caAfter = await certAt(files.caCertFile);

    assert.notEqual(caAfter.subject, caBefore.subject);
    assert.equal((await certAt(files.certFile)).verify(caAfter.publicKey), true);
  });

  test('a server key left mismatched (a crash between two writes) is repaired by reissuing', async (t) => {
    const dir = await tempDir(t);
    const other = await ensureLocalTls(await tempDir(t), { hostnames: ['localhost'] });
    const files = await ensureLocalTls(dir, { hostnames: ['localhost'] });
    const caBefore = await fs.readFile(files.caCertFile);
    await fs.copyFile(other.keyFile, files.keyFile);

    await ensureLocalTls(dir, { hostnames: ['localhost'] });
    const cert = await certAt(files.certFile);

    assert.equal(cert.checkPrivateKey(createPrivateKey(await fs.readFile(files.keyFile))), true);
    assert.deepEqual(await fs.readFile(files.caCertFile), caBefore);
  });

  test('a CA key that does not match the CA certificate is refused, never used to sign', async (t) => {
    const dir = await tempDir(t);
    const otherDir = await tempDir(t);
    await ensureLocalTls(otherDir, { hostnames: ['localhost'] });
    await ensureLocalTls(dir, { hostnames: ['localhost'] });
    await fs.copyFile(path.join(otherDir, 'ca-key.pem'), path.join(dir, 'ca-key.pem'));

    await assert.rejects(ensureLocalTls(dir, { hostnames: ['localhost'] }), IntegrityError);
  });

  test('a folder with looser permissions is tightened to 0700', async (t) => {
    const dir = await tempDir(t);
    await fs.chmod(dir, 0o755);
    await ensureLocalTls(dir, { hostnames: ['localhost'] });
    assert.equal(await mode(dir), 0o700);
  });

  test('a hostname that is not a DNS name or IP address is refused', async (t) => {
    const dir = await tempDir(t);
    for (const bad of ['bad host', 'evil.test\r\nX: y', '*.example.test', '-lead.example.test', '']) {
      await assert.rejects(ensureLocalTls(dir, { hostnames: [bad] }), ConfigError, JSON.stringify(bad));
    }
  });

  test('concurrent first calls on one folder create a single consistent CA', async (t) => {
    const dir = await tempDir(t);
    const [a, b] = await Promise.all([
      ensureLocalTls(dir, { hostnames: ['localhost'] }),
      ensureLocalTls(dir, { hostnames: ['localhost'] }),
    ]);
    assert.deepEqual(a, b);
    const ca = await certAt(a.caCertFile);
    assert.equal(ca.checkPrivateKey(createPrivateKey(await fs.readFile(path.join(dir, 'ca-key.pem')))), true);
    assert.equal((await certAt(a.certFile)).verify(ca.publicKey), true);
  });
});
