import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, EgressDeniedError, EgressFailedError, type EgressFailure } from '../../src/errors.js';
import { checkSmtpHost, egressRequest, resolveAllowed, type EgressPolicy } from '../../src/ops/notify/egress.js';
import { tempDirs } from '../support/cli-process.js';
import { fakeDns, hookTls, policy, startHookServer, type HookServer } from './egress-fixtures.js';

const tempDir = tempDirs('strongroom-egress-');
const tls = hookTls(tempDir());

async function denied(promise: Promise<unknown>, why: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof EgressDeniedError, `expected EgressDeniedError, got ${String(err)}`);
    assert.equal(err.code, 'egress_denied');
    assert.match(err.message, why);
    return true;
  });
}

async function failed(promise: Promise<unknown>, reason: EgressFailure): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof EgressFailedError, `expected EgressFailedError, got ${String(err)}`);
    assert.equal(err.reason, reason, err.message);
    return true;
  });
}

describe('resolveAllowed', () => {
  test('every internal range is refused by default, the message naming the host and the kind of address', async () => {
    const dns = fakeDns(['8.8.8.8']);
    const internal = {
      '0.0.0.0': /"this network"/, '10.0.0.1': /private/, '100.64.0.1': /carrier-grade NAT/, '127.0.0.1': /loopback/,
      '169.254.1.1': /link-local/, '172.31.255.255': /private/, '192.0.0.8': /IETF/, '192.0.2.1': /documentation/,
      '192.168.1.1': /private/, '198.19.0.1': /benchmarking/, '198.51.100.7': /documentation/, '203.0.113.9': /documentation/,
      '224.0.0.251': /multicast/, '240.0.0.1': /reserved/, '255.255.255.255': /broadcast/, '::': /unspecified/,
      '[::1]': /loopback/, 'fd12:3456::1': /unique local/, 'fe80::1': /link-local/, 'ff02::1': /multicast/,
      '2001:db8::1': /documentation/, '[::ffff:127.0.0.1]': /loopback/, '::ffff:a00:1': /private/, '64:ff9b::7f00:1': /loopback/,
    };
    for (const [host, why] of Object.entries(internal)) {
      const name = host.replace(/^\[(.*)\]$/, '$1').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      await denied(resolveAllowed(policy({ lookup: dns.lookup }), host), new RegExp(`^egress to ${name} refused: .*${why.source}`));
    }
    assert.deepEqual(dns.asked, [], 'IP literals are never looked up');
  });

  test('public addresses pass, IPv4-mapped and NAT64 ones judged by the IPv4 address they carry', async () => {
    assert.deepEqual(await resolveAllowed(policy(), '8.8.8.8'), [{ address: '8.8.8.8', family: 4 }]);
    assert.deepEqual(await resolveAllowed(policy(), '[2606:4700:4700::1111]'), [{ address: '2606:4700:4700::1111', family: 6 }]);
    assert.deepEqual(await resolveAllowed(policy(), '[::ffff:8.8.8.8]'), [{ address: '::ffff:8.8.8.8', family: 6 }]);
    assert.deepEqual(await resolveAllowed(policy(), '64:ff9b::808:808'), [{ address: '64:ff9b::808:808', family: 6 }]);
  });

  test('cloud metadata addresses stay refused under broad allowed ranges and open only when listed exactly', async () => {
    const broad = policy({ allowedNetworks: ['169.254.0.0/16', '100.64.0.0/10', 'fc00::/7', '0.0.0.0/0'] });
    for (const host of ['169.254.169.254', '[::ffff:169.254.169.254]', '64:ff9b::a9fe:a9fe', '100.100.100.200', 'fd00:ec2::254', '169.254.170.2']) {
      await denied(resolveAllowed(broad, host), /cloud metadata address; only an exact \/32 or \/128/);
    }
    assert.equal((await resolveAllowed(broad, '169.254.1.1'))[0]?.address, '169.254.1.1');
    const exact = policy({ allowedNetworks: ['169.254.169.254/32', 'fd00:ec2:0::254/128'] });
    assert.equal((await resolveAllowed(exact, '169.254.169.254'))[0]?.address, '169.254.169.254');
    assert.equal((await resolveAllowed(exact, 'fd00:ec2::254'))[0]?.address, 'fd00:ec2::254');
  });

  test('an allowed range opens exactly its addresses, and an IPv6 range never opens IPv4 ones', async () => {
    const relay = policy({ allowedNetworks: ['10.20.0.0/16'] });
    assert.equal((await resolveAllowed(relay, '10.20.3.4'))[0]?.address, '10.20.3.4');
    await denied(resolveAllowed(relay, '10.21.0.1'), /private address \(10\.0\.0\.0\/8\), outside egress\.allowedNetworks/);
    const allV6 = policy({ allowedNetworks: ['::/0'] });
    assert.equal((await resolveAllowed(allV6, '::1'))[0]?.address, '::1');
    await denied(resolveAllowed(allV6, '127.0.0.1'), /loopback/);
    await denied(resolveAllowed(allV6, '::ffff:127.0.0.1'), /loopback/);
  });

  test('a scoped IPv6 address is refused even when its range is allowed', async () => {
    await denied(resolveAllowed(policy({ allowedNetworks: ['fe80::/10'] }), 'fe80::1%eth0'), /scoped address/);
  });

  test('an allowed network that is not address/prefix is a configuration error', async () => {
    for (const bad of ['10.0.0.0', '10.0.0.0/33', '::/129', 'example.com/8', '10.0.0.0/-1']) {
      await assert.rejects(resolveAllowed(policy({ allowedNetworks: [bad] }), '8.8.8.8'), ConfigError, bad);
    }
  });

  test('a name is refused if any of its addresses is internal', async () => {
    const dns = fakeDns(['8.8.8.8', '10.1.2.3']);
    await denied(resolveAllowed(policy({ lookup: dns.lookup }), 'mixed.example.com'), /^egress to mixed\.example\.com refused: 10\.1\.2\.3 is a private address/);
  });

  test('the name localhost resolves to loopback and is refused unless loopback is allowed', async () => {
    await denied(resolveAllowed(policy(), 'localhost'), /^egress to localhost refused: .* loopback address/);
    const open = await resolveAllowed(policy({ allowedNetworks: ['127.0.0.0/8', '::1/128'] }), 'localhost');
    assert.ok(open.length > 0 && open.every((a) => a.address === '127.0.0.1' || a.address === '::1'));
  });

  test('allowedHosts refuses any other name before it is resolved', async () => {
    const dns = fakeDns(['8.8.8.8']);
    const only = policy({ allowedHosts: ['hooks.example.com'], lookup: dns.lookup });
    await denied(resolveAllowed(only, 'other.example.com'), /^egress to other\.example\.com refused: not in egress\.allowedHosts$/);
    await denied(resolveAllowed(only, '8.8.8.8'), /not in egress\.allowedHosts/);
    assert.deepEqual(dns.asked, []);
    assert.equal((await resolveAllowed(only, 'Hooks.Example.com.'))[0]?.address, '8.8.8.8');
    assert.deepEqual(dns.asked, ['hooks.example.com']);
  });

  test('*.example.com matches its subdomains, not example.com itself nor names that merely end alike', async () => {
    const wildcard = policy({ allowedHosts: ['*.example.com'], lookup: fakeDns(['8.8.8.8']).lookup });
    assert.equal((await resolveAllowed(wildcard, 'a.example.com')).length, 1);
    assert.equal((await resolveAllowed(wildcard, 'b.a.example.com')).length, 1);
    await denied(resolveAllowed(wildcard, 'example.com'), /not in egress\.allowedHosts/);
    await denied(resolveAllowed(wildcard, 'evilexample.com'), /not in egress\.allowedHosts/);
  });

  test('a string that is not a host name is refused without a lookup; a name without an address fails as dns', async () => {
    const dns = fakeDns([]);
    for (const host of ['a b.example.com', 'evil.com/x', '', 'a..b']) await denied(resolveAllowed(policy({ lookup: dns.lookup }), host), /not a host name/);
    assert.deepEqual(dns.asked, []);
    await failed(resolveAllowed(policy({ lookup: dns.lookup }), 'void.example.com'), 'dns');
    const notFound = Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
    await failed(resolveAllowed(policy({ lookup: () => Promise.reject(notFound) }), 'gone.example.com'), 'dns');
  });
});

describe('checkSmtpHost', () => {
  test('returns the judged address the SMTP client is to connect to, and refuses internal relays unless allowed', async () => {
    const dns = fakeDns(['10.20.0.5']);
    await denied(checkSmtpHost(policy({ lookup: dns.lookup }), 'smtp.internal.example'), /private address/);
    assert.equal(await checkSmtpHost(policy({ lookup: dns.lookup, allowedNetworks: ['10.20.0.5/32'] }), 'smtp.internal.example'), '10.20.0.5');
  });
});

describe('egressRequest', () => {
  const loopback = (over: Partial<EgressPolicy> = {}) => policy({ allowedNetworks: ['127.0.0.1/32'], ...over });
  const get = { method: 'GET' as const, headers: {} };
  const trusting = (server: HookServer) => ({ ...get, ca: [server.ca] });

  test('reaches an allowed server under its host name, verifying its certificate against that name', async (t) => {
    const server = await startHookServer(t, await tls);
    const dns = fakeDns(['127.0.0.1']);
    const allowed = loopback({ allowedHosts: ['*.example.com'], lookup: dns.lookup });
    const res = await egressRequest(allowed, `https://hooks.example.com:${server.port}/ok`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi', ca: [server.ca] });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'ok');
    assert.deepEqual(server.requests, [`hooks.example.com:${server.port} /ok`]);
    assert.deepEqual(dns.asked, ['hooks.example.com', 'hooks.example.com'], 'judged before, and again at connect time');
  });

  test('a literal loopback address is reached when allowed and refused otherwise', async (t) => {
    const server = await startHookServer(t, await tls);
    assert.equal((await egressRequest(loopback(), `https://127.0.0.1:${server.port}/ok`, trusting(server))).status, 200);
    await denied(egressRequest(policy(), `https://127.0.0.1:${server.port}/ok`, trusting(server)), /loopback/);
    assert.equal(server.connections, 1);
  });

  test('literal internal and metadata addresses are refused without any connection attempt', async (t) => {
    const server = await startHookServer(t, await tls);
    const hosts = ['127.0.0.1', '169.254.169.254', '10.0.0.1', '100.100.100.200', '[::1]', '[::ffff:127.0.0.1]', '[::ffff:169.254.169.254]'];
    for (const host of hosts) {
      const started = Date.now();
      await denied(egressRequest(policy(), `https://${host}:${server.port}/ok`, trusting(server)), /refused/);
      assert.ok(Date.now() - started < 200, `${host} was refused at once`);
    }
    await denied(egressRequest(policy({ allowedNetworks: ['169.254.0.0/16'] }), 'https://169.254.169.254/latest/meta-data/', get), /cloud metadata/);
    assert.equal(server.connections, 0);
  });

  test('the name localhost is refused unless loopback is allowed', async (t) => {
    const server = await startHookServer(t, await tls);
    await denied(egressRequest(policy(), `https://localhost:${server.port}/ok`, trusting(server)), /^egress to localhost refused/);
    assert.equal(server.connections, 0);
    const open = policy({ allowedNetworks: ['127.0.0.1/32', '::1/128'] });
    assert.equal((await egressRequest(open, `https://localhost:${server.port}/ok`, trusting(server))).status, 200);
  });

  test('only https URLs without credentials are accepted, and the message never repeats the URL', async () => {
    await denied(egressRequest(policy(), 'http://hooks.example.com/x', get), /only https: URLs are allowed, not http:/);
    await denied(egressRequest(policy(), 'file:///etc/passwd', get), /not file:/);
    await denied(egressRequest(policy(), 'gopher://hooks.example.com:25/x', get), /not gopher:/);
    await denied(egressRequest(policy(), 'not a url', get), /^egress refused: the URL is not valid$/);
    await assert.rejects(egressRequest(policy(), 'https://user:hunter2@hooks.example.com/t0ken', get), (err: Error) => {
      assert.equal(err.message, 'egress to hooks.example.com refused: credentials in the URL are refused');
      return true;
    });
  });

  test('DNS rebinding: a name that resolves to a public address when checked and to loopback at connect time is refused at connect', async (t) => {
    const server = await startHookServer(t, await tls);
    const dns = fakeDns(['8.8.8.8'], ['127.0.0.1']);
    await denied(egressRequest(policy({ lookup: dns.lookup }), `https://rebind.example.com:${server.port}/ok`, trusting(server)), /^egress to rebind\.example\.com refused: 127\.0\.0\.1 is a loopback address/);
    assert.deepEqual(dns.asked, ['rebind.example.com', 'rebind.example.com']);
    assert.equal(server.connections, 0);
  });

  test('a redirect to the metadata address is returned as it is and not followed', async (t) => {
    const server = await startHookServer(t, await tls);
    const res = await egressRequest(loopback(), `https://127.0.0.1:${server.port}/redirect`, trusting(server));
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, 'https://169.254.169.254/latest/meta-data/');
    assert.equal(server.requests.length, 1);
  });

  test('a server that does not answer in time, or trickles its body past the deadline, fails with a timeout', async (t) => {
    const server = await startHookServer(t, await tls);
    for (const path of ['/stall', '/trickle']) {
      const started = Date.now();
      await failed(egressRequest(loopback({ timeoutMs: 400 }), `https://127.0.0.1:${server.port}${path}`, trusting(server)), 'timeout');
      assert.ok(Date.now() - started < 1500, `${path} ended near the deadline`);
    }
  });

  test('a response longer than maxResponseBytes is cut off and fails; one that fits is returned', async (t) => {
    const server = await startHookServer(t, await tls);
    await failed(egressRequest(loopback({ maxResponseBytes: 1024 }), `https://127.0.0.1:${server.port}/big`, trusting(server)), 'too_large');
    const fits = await egressRequest(loopback({ maxResponseBytes: 4096 }), `https://127.0.0.1:${server.port}/big`, trusting(server));
    assert.equal(fits.body.length, 4096);
  });

  test('a server that drops the connection fails cleanly', async (t) => {
    const server = await startHookServer(t, await tls);
    await failed(egressRequest(loopback(), `https://127.0.0.1:${server.port}/close`, trusting(server)), 'connection');
  });

  test('a certificate the client does not trust, or one for another name, fails before any request is sent', async (t) => {
    const server = await startHookServer(t, await tls);
    await failed(egressRequest(loopback(), `https://127.0.0.1:${server.port}/ok`, get), 'connection');
    const otherName = loopback({ lookup: fakeDns(['127.0.0.1']).lookup });
    await failed(egressRequest(otherName, `https://evil.example.net:${server.port}/ok`, trusting(server)), 'connection');
    assert.deepEqual(server.requests, []);
  });
});
