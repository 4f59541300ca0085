import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { startRedirectListener, type RedirectListenerOptions } from '../../src/http/tls/redirect-listener.js';

async function listen(t: TestContext, opts: Partial<RedirectListenerOptions> = {}) {
  const listener = await startRedirectListener({ host: '127.0.0.1', port: 0, httpsPort: 8443, ...opts });
  t.after(() => listener.close());
  return listener;
}

interface Answer {
  status: number | undefined;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, options: http.RequestOptions, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, agent: false, ...options }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends bytes exactly as given (malformed requests included) and returns all the server wrote. */
function rawExchange(port: number, bytes: Buffer | string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString('latin1')));
    socket.on('end', () => resolve(text));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(text) : reject(err)));
  });
}

function locationIn(response: string): string | undefined {
  return /\r\nlocation: ([^\r\n]*)\r\n/i.exec(response)?.[1];
}

describe('startRedirectListener', () => {
  test('a GET gets 308 to the same host and path on the HTTPS port, an empty body and Connection: close', async (t) => {
    const { port } = await listen(t);
    const res = await request(port, { method: 'GET', path: '/v1/tenants?x=1&y=%20', headers: { host: 'Data.Example.test:8080' } });
    assert.equal(res.status, 308);
    assert.equal(res.headers.location, 'https://data.example.test:8443/v1/tenants?x=1&y=%20');
    assert.equal(res.headers.connection, 'close');
    assert.equal(res.headers['content-length'], '0');
    assert.equal(res.body, '');
  });

  test('a POST with a body gets the same 308 and its body is never echoed', async (t) => {
    const { port } = await listen(t);
    const secret = '{"password":"hunter2-do-not-echo"}';
    const res = await request(
      port,
      { method: 'POST', path: '/v1/login', headers: { host: 'localhost:8080', 'content-type': 'application/json' } },
      secret,
    );
    assert.equal(res.status, 308);
    assert.equal(res.headers.location, 'https://localhost:8443/v1/login');
    assert.equal(res.body, '');
    assert.doesNotMatch(JSON.stringify(res.headers), /hunter2/);
  });

  test('no method ever gets a 200 or a body', async (t) => {
    const { port } = await listen(t);
    for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND']) {
      const res = await request(port, { method, path: '/anything', headers: { host: 'localhost' } }, method === 'GET' || method === 'HEAD' ? undefined : 'x');
      assert.equal(res.status, 308, method);
      assert.equal(res.body, '', method);
    }
  });

  test('publicHost wins over the Host header, and port 443 is left implicit', async (t) => {
    const { port } = await listen(t, { publicHost: 'data.example.com', httpsPort: 443 });
    const res = await request(port, { path: '/status', headers: { host: 'attacker.test' } });
    assert.equal(res.headers.location, 'https://data.example.com/status');
  });

  test('a bracketed IPv6 Host keeps its brackets', async (t) => {
    const { port } = await listen(t);
    const res = await request(port, { path: '/', headers: { host: '[::1]:8080' } });
    assert.equal(res.headers.location, 'https://[::1]:8443/');
  });

  test('a Host header that is not a plain host name is never reflected', async (t) => {
    const { port } = await listen(t);
    for (const host of ['evil.test/<script>', 'evil.test@good.test', 'a b', 'evil.test:80:80', '[evil.test]', 'évil.test', '']) {
      const response = await rawExchange(port, Buffer.from(`GET /p HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 'latin1'));
      assert.match(response, /^HTTP\/1\.1 308 /, JSON.stringify(host));
      assert.equal(locationIn(response), 'https://localhost:8443/p', JSON.stringify(host));
    }
  });

  test('a Host header smuggling CR or LF cannot add a header or a body to the answer', async (t) => {
    const { port } = await listen(t);
    const attempts = [
      'GET / HTTP/1.1\r\nHost: evil.test\rSet-Cookie: owned=1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: evil.test%0d%0aSet-Cookie:%20owned=1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: evil.test\n Set-Cookie: owned=1\r\n\r\n',
    ];
    for (const attempt of attempts) {
      const response = await rawExchange(port, attempt);
      assert.doesNotMatch(response, /Set-Cookie|owned|evil/i, JSON.stringify(attempt));
      assert.doesNotMatch(response, /^HTTP\/1\.1 200/, JSON.stringify(attempt));
    }
  });

  test('a request target that is not an origin-form path redirects to the root', async (t) => {
    const { port } = await listen(t);
    for (const target of ['http://evil.test/x', '*']) {
      const response = await rawExchange(port, `OPTIONS ${target} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      assert.match(response, /^HTTP\/1\.1 308 /, target);
      assert.equal(locationIn(response), 'https://localhost:8443/', target);
    }
  });

  test('a path with raw non-ASCII bytes is never reflected', async (t) => {
    const { port } = await listen(t);
    const response = await rawExchange(port, Buffer.from('GET /caf\xc3\xa9 HTTP/1.1\r\nHost: localhost\r\n\r\n', 'latin1'));
    // node's parser answers 400 before the handler runs; either way nothing of the path comes back.
    assert.doesNotMatch(response, /caf/);
    assert.doesNotMatch(response, /^HTTP\/1\.1 200/);
  });

  test('an HTTP/1.0 request without Host is redirected to localhost', async (t) => {
    const { port } = await listen(t);
    const response = await rawExchange(port, 'GET /x HTTP/1.0\r\n\r\n');
    assert.match(response, /^HTTP\/1\.1 308 /);
    assert.equal(locationIn(response), 'https://localhost:8443/x');
  });

  test('CONNECT and WebSocket upgrade requests get the 308 too', async (t) => {
    const { port } = await listen(t);
    const connect = await rawExchange(port, 'CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n');
    assert.match(connect, /^HTTP\/1\.1 308 /);
    const upgrade = await rawExchange(
      port,
      'GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    assert.match(upgrade, /^HTTP\/1\.1 308 /);
    assert.equal(locationIn(upgrade), 'https://localhost:8443/ws');
  });

  test('a publicHost or port that is not valid is refused at start', async () => {
    await assert.rejects(startRedirectListener({ host: '127.0.0.1', port: 0, httpsPort: 8443, publicHost: 'evil.test\r\nX: y' }), {
      code: 'invalid_config',
    });
    await assert.rejects(startRedirectListener({ host: '127.0.0.1', port: 0, httpsPort: 0 }), { code: 'invalid_config' });
  });
});
