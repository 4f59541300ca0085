import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { reloadServerCertificate, watchCertificate, type CertificatePair } from '../../src/http/tls/cert-reloader.js';
import { ensureLocalTls } from '../../src/http/tls/local-ca.js';
import { handshake, startHttps, tempDir } from './tls-fixtures.js';

const DAY_MS = 86_400_000;
const INTERVAL_MS = 40;

interface Issued {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

async function issue(t: TestContext, clock?: () => Date): Promise<Issued> {
  const files = await ensureLocalTls(await tempDir(t), { hostnames: ['localhost'], clock });
  return {
    cert: await fs.readFile(files.certFile),
    key: await fs.readFile(files.keyFile),
    ca: await fs.readFile(files.caCertFile),
  };
}

/** How an operator or a tool like certbot replaces a file: write beside it, then rename. */
async function replaceFile(file: string, content: Buffer): Promise<void> {
  await fs.writeFile(`${file}.new`, content);
  await fs.rename(`${file}.new`, file);
}

/** A served pair (A) in a bring-your-own folder, an HTTPS server presenting it, and a watcher. */
async function servedAndWatched(t: TestContext, intervalMs = INTERVAL_MS) {
  const a = await issue(t);
  const b = await issue(t);
  const dir = await tempDir(t);
  const certFile = path.join(dir, 'fullchain.pem');
  const keyFile = path.join(dir, 'privkey.pem');
  await fs.writeFile(certFile, a.cert);
  await fs.writeFile(keyFile, a.key);
  const https = await startHttps(t, a);
  const reloads: CertificatePair[] = [];
  const errors: Error[] = [];
  const watcher = watchCertificate({
    certFile,
    keyFile,
    intervalMs,
    onReload: (pair) => {
      reloads.push(pair);
      reloadServerCertificate(https.server, pair);
    },
    onError: (err) => errors.push(err),
  });
  t.after(() => watcher.close());
  const served = () => handshake(https.port, { ca: [a.ca, b.ca] });
  return { a, b, certFile, keyFile, reloads, errors, served };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !condition(); waited += 10) {
    if (waited > 5000) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('watchCertificate', () => {
  test('a new valid pair is loaded into the running server without a restart', async (t) => {
    const w = await servedAndWatched(t);
    const before = await w.served();

    await replaceFile(w.certFile, w.b.cert);
    await replaceFile(w.keyFile, w.b.key);
    await until(() => w.reloads.length === 1, 'the reload');
    const after = await w.served();

    assert.notEqual(after.fingerprint256, before.fingerprint256);
    assert.notEqual(after.serialNumber, before.serialNumber);
    assert.deepEqual(w.reloads[0], { cert: w.b.cert, key: w.b.key });
    assert.deepEqual(w.errors, []);
    assert.equal(after.protocol, 'TLSv1.3', 'the TLS policy survives the reload');
  });

  test('a key that does not match the certificate is reported once and the old pair keeps serving', async (t) => {
    const w = await servedAndWatched(t);
    const before = await w.served();

    await replaceFile(w.certFile, w.b.cert); // the key stays A's
    await until(() => w.errors.length === 1, 'the error');
    await sleep(INTERVAL_MS * 5);

    assert.equal(w.errors.length, 1, 'reported once, not on every check');
    assert.match(w.errors[0]?.message ?? '', /does not belong/);
    assert.equal(w.reloads.length, 0);
    assert.equal((await w.served()).fingerprint256, before.fingerprint256);

    await replaceFile(w.keyFile, w.b.key); // the operator completes the pair
    await until(() => w.reloads.length === 1, 'the reload');
    assert.notEqual((await w.served()).fingerprint256, before.fingerprint256);
  });

  test('a certificate written a moment before its key is not reported as an error', async (t) => {
    // A long interval, so a busy machine cannot stretch the gap between the two writes past it.
    const w = await servedAndWatched(t, 250);
    await replaceFile(w.certFile, w.b.cert);
    await sleep(10);
    await replaceFile(w.keyFile, w.b.key);
    await until(() => w.reloads.length === 1, 'the reload');
    assert.deepEqual(w.errors, []);
  });

  test('garbage in the certificate file is reported and ignored', async (t) => {
    const w = await servedAndWatched(t);
    const before = await w.served();
    await replaceFile(w.certFile, Buffer.from('not a certificate'));
    await until(() => w.errors.length === 1, 'the error');
    assert.equal(w.reloads.length, 0);
    assert.equal((await w.served()).fingerprint256, before.fingerprint256);
  });

  test('an expired pair is reported and ignored', async (t) => {
    const w = await servedAndWatched(t);
    const longAgo = new Date(Date.now() - 800 * DAY_MS);
    const expired = await issue(t, () => longAgo);
    await replaceFile(w.certFile, expired.cert);
    await replaceFile(w.keyFile, expired.key);
    await until(() => w.errors.length === 1, 'the error');
    assert.match(w.errors[0]?.message ?? '', /expired/);
    assert.equal(w.reloads.length, 0);
  });

  test('a deleted key file is reported, and the restored pair is not reloaded needlessly', async (t) => {
    const w = await servedAndWatched(t);
    await fs.rm(w.keyFile);
    await until(() => w.errors.length === 1, 'the error');
    await fs.writeFile(w.keyFile, w.a.key);
    await sleep(INTERVAL_MS * 5);
    assert.equal(w.reloads.length, 0, 'the restored pair is the one already served');
    assert.equal(w.errors.length, 1);
  });
});
