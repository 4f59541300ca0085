import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import tls from 'node:tls';
import { ensureLocalTls } from '../../src/http/tls/local-ca.js';
import { tlsPolicy } from '../../src/http/tls/tls-policy.js';
import { handshake, startHttps } from './tls-fixtures.js';

describe('tlsPolicy on a real HTTPS listener', () => {
  let ca: Buffer;
  let pem: { cert: Buffer; key: Buffer };

  before(async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'strongroom-tls-'));
    const files = await ensureLocalTls(dir, { hostnames: ['localhost'] });
    ca = await fs.readFile(files.caCertFile);
    pem = { cert: await fs.readFile(files.certFile), key: await fs.readFile(files.keyFile) };
    await fs.rm(dir, { recursive: true });
  });

  test('a client trusting only the local CA gets a verified response for servername localhost', async (t) => {
    const { port } = await startHttps(t, pem);
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/', servername: 'localhost', ca }, (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString()));
          res.on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    assert.equal(body, 'ok');
  });

  test('a client that does not trust the local CA is refused by its own verification', async (t) => {
    const { port } = await startHttps(t, pem);
    await assert.rejects(handshake(port), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  });

  test('a modern client negotiates TLS 1.3', async (t) => {
    const { port } = await startHttps(t, pem);
    const result = await handshake(port, { ca });
    assert.equal(result.protocol, 'TLSv1.3');
  });

  test('a TLS 1.1 client is refused by the server', async (t) => {
    const server = await startHttps(t, pem);
    // The client is made willing to speak TLS 1.1 so the refusal is the server's, not OpenSSL's defaults.
    await assert.rejects(
      handshake(server.port, { ca, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
    );
    assert.match(String(server.handshakeErrors[0]?.message), /unsupported protocol/);
  });

  for (const cbcSuite of ['ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES256-SHA384', 'ECDHE-ECDSA-AES128-SHA']) {
    test(`a TLS 1.2 client offering only the CBC suite ${cbcSuite} is refused`, async (t) => {
      const server = await startHttps(t, pem);
      await assert.rejects(
        handshake(server.port, { ca, maxVersion: 'TLSv1.2', ciphers: `${cbcSuite}@SECLEVEL=0` }),
      );
      assert.match(String(server.handshakeErrors[0]?.message), /no shared cipher/);
    });
  }

  for (const aeadSuite of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
    test(`a TLS 1.2 client offering the AEAD suite ${aeadSuite} connects`, async (t) => {
      const { port } = await startHttps(t, pem);
      const result = await handshake(port, { ca, maxVersion: 'TLSv1.2', ciphers: aeadSuite });
      assert.equal(result.protocol, 'TLSv1.2');
      assert.equal(result.cipher, aeadSuite);
    });
  }

  test('the TLS 1.2 cipher list names only forward-secret AEAD suites', () => {
    for (const suite of tlsPolicy.ciphers.split(':')) {
      assert.match(suite, /^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
    }
    assert.equal(tlsPolicy.minVersion, 'TLSv1.2');
    assert.equal(tlsPolicy.honorCipherOrder, true);
  });

  test('a client-initiated TLS 1.2 renegotiation is refused', async (t) => {
    const { port } = await startHttps(t, pem);
    const outcome = await new Promise<Error | null>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, maxVersion: 'TLSv1.2' }, () => {
        socket.renegotiate({ rejectUnauthorized: true }, (err) => {
          socket.destroy();
          resolve(err);
        });
      });
      socket.on('error', (err) => resolve(err));
      socket.setTimeout(5000, () => reject(new Error('renegotiation neither completed nor failed')));
    });
    assert.match(String(outcome?.message), /no renegotiation/);
  });
});
