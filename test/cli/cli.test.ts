import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as netConnect, createServer } from 'node:net';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { runCli, spawnServer, tempDirs } from '../support/cli-process.js';
import { ensureLocalTls } from '../../src/http/tls/local-ca.js';

const tempDir = tempDirs('strongroom-cli-');

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('configuration', () => {
  test('config print shows the effective configuration with secrets masked', async () => {
    const dir = tempDir();
    const res = await runCli(dir, ['config', 'print'], { env: {
      STRONGROOM_DATABASE__POSTGRES__URL: 'postgres://app:hunter2-secret@db.internal/app',
      STRONGROOM_SERVER__PORT: '9443',
    } });
    assert.equal(res.code, 0, res.stderr);
    const printed = JSON.parse(res.stdout);
    assert.equal(printed.database.postgres.url, '********');
    assert.equal(printed.server.port, 9443);
    assert.equal(printed.dataDir, dir);
    assert.ok(!res.stdout.includes('hunter2'));
  });

  test('an invalid value stops start-up with a message naming the key', async () => {
    const res = await runCli(tempDir(), ['config', 'print'], { env: { STRONGROOM_SERVER__PORT: '99999' } });
    assert.equal(res.code, 2);
    assert.match(res.stderr, /server\.port/);
  });

  test('an unknown key in the configuration file is named', async () => {
    const dir = tempDir();
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ server: { prot: 8443 } }));
    const res = await runCli(dir, ['--config', file, 'config', 'print']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /server\.prot: unknown key/);
  });

  test('the file is read, and the environment wins over it', async () => {
    const dir = tempDir();
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ server: { port: 7000, publicHost: 'data.example.com' } }));
    const res = await runCli(dir, ['--config', file, 'config', 'print'], { env: { STRONGROOM_SERVER__PORT: '7001' } });
    assert.equal(res.code, 0, res.stderr);
    const printed = JSON.parse(res.stdout);
    assert.equal(printed.server.port, 7001);
    assert.equal(printed.server.publicHost, 'data.example.com');
  });
});

describe('the embedded default', () => {
  test('serves HTTPS, creates a tenant from the CLI, and round-trips a record with the local CA', async (t) => {
    const dir = tempDir();
    const created = await runCli(dir, ['tenant', 'create', 'acme', '--json']);
    assert.equal(created.code, 0, created.stderr);
    const lines = created.stdout.trim().split('\n');
    assert.equal(lines.length, 1, 'one JSON object');
    const { tenantId, apiKey } = JSON.parse(lines[0]!);
    assert.match(tenantId, /^t_[a-z2-7]{16}$/);

    const httpPort = await freePort();
    const server = await spawnServer(dir, { env: { STRONGROOM_SERVER__HTTP_PORT: String(httpPort) } });
    const port = Number(new URL(server.url).port);
    t.after(() => server.stop());
    const ca = readFileSync(join(dir, 'tls', 'ca-cert.pem'));
    const agent = new Agent({ connect: { ca } });
    t.after(() => agent.close());
    const base = `https://localhost:${port}/v1/tenants/${tenantId}`;
    const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
    const declared = await request(`${base}/collections/notes`, { method: 'PUT', headers, body: '{"indexes":[]}', dispatcher: agent });
    assert.equal(declared.statusCode, 201, await declared.body.text());
    const put = await request(`${base}/collections/notes/records/first`, { method: 'PUT', headers, body: '{"text":"hello"}', dispatcher: agent });
    assert.equal(put.statusCode, 201, await put.body.text());
    const get = await request(`${base}/collections/notes/records/first`, { headers, dispatcher: agent });
    assert.equal(get.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
    assert.deepEqual(((await get.body.json()) as { data: unknown }).data, { text: 'hello' });

    // Plain HTTP gets a redirect and never data.
    const plain = await new Promise<{ status: number; location: string; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: httpPort, path: `/v1/tenants/${tenantId}/collections/notes/records/first`, headers: { authorization: `Bearer ${apiKey}`, host: 'localhost' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, location: String(res.headers.location), body }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(plain.status, 308);
    assert.equal(plain.location, `https://localhost:${port}/v1/tenants/${tenantId}/collections/notes/records/first`);
    assert.equal(plain.body, '');

    // Plain HTTP spoken to the HTTPS port gets no data either.
    const raw = await new Promise<string>((resolve) => {
      const socket = createConnectionText(port, `GET /v1/tenants/${tenantId}/collections/notes/records/first HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${apiKey}\r\n\r\n`, resolve);
      socket.setTimeout(3000, () => socket.destroy());
    });
    assert.ok(!raw.includes('hello'), 'no record data over plain HTTP');

    // The data directory is private.
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const name of ['strongroom.db', 'kms/master.key', 'kms/keystore.json', 'tls/ca-key.pem', 'tls/server-key.pem']) {
      assert.equal(statSync(join(dir, name)).mode & 0o077, 0, `${name} is private`);
    }
    assert.ok(readdirSync(join(dir, 'kms')).includes('keystore.json'));
  });

  test('the first start prints how to trust the CA and make a first call', async (t) => {
    const dir = tempDir();
    const server = await spawnServer(dir);
    const port = Number(new URL(server.url).port);
    t.after(() => server.stop());
    await new Promise((r) => setTimeout(r, 300));
    const out = server.stdout.join('');
    assert.match(out, new RegExp(`listening https://localhost:${port}`));
    assert.ok(out.includes(join(dir, 'tls', 'ca-cert.pem')));
    assert.match(out, /tenant create acme --json/);
    assert.match(out, /curl --cacert/);
  });

  test('a certificate of our own is served, and replaced without a restart when its files change', async (t) => {
    const dir = tempDir();
    const first = await ensureLocalTls(join(dir, 'ca1'), { hostnames: ['localhost'] });
    const second = await ensureLocalTls(join(dir, 'ca2'), { hostnames: ['localhost'] });
    const certFile = join(dir, 'cert.pem');
    const keyFile = join(dir, 'key.pem');
    writeFileSync(certFile, readFileSync(first.certFile));
    writeFileSync(keyFile, readFileSync(first.keyFile));
    const server = await spawnServer(join(dir, 'data'), {
      env: { STRONGROOM_SERVER__TLS__CERT_FILE: certFile, STRONGROOM_SERVER__TLS__KEY_FILE: keyFile },
    });
    const port = Number(new URL(server.url).port);
    t.after(() => server.stop());
    const fingerprint = () =>
      new Promise<string>((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port: port, servername: 'localhost', rejectUnauthorized: false }, () => {
          resolve(socket.getPeerX509Certificate()!.fingerprint256);
          socket.end();
        });
        socket.on('error', reject);
      });
    const before = await fingerprint();
    assert.equal(before, new X509Certificate(readFileSync(first.certFile)).fingerprint256);
    writeFileSync(keyFile, readFileSync(second.keyFile));
    writeFileSync(certFile, readFileSync(second.certFile));
    const wanted = new X509Certificate(readFileSync(second.certFile)).fingerprint256;
    let now = before;
    for (let i = 0; i < 50 && now !== wanted; i++) {
      await new Promise((r) => setTimeout(r, 200));
      now = await fingerprint();
    }
    assert.equal(now, wanted);
  });
});

function createConnectionText(port: number, text: string, done: (response: string) => void) {
  const socket = netConnect(port, '127.0.0.1', () => socket.write(text));
  let response = '';
  socket.on('data', (c: Buffer) => (response += c.toString('latin1')));
  socket.on('close', () => done(response));
  socket.on('error', () => undefined);
  return socket;
}
