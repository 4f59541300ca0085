import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { SMTPServerOptions } from 'smtp-server';
import { BadRequestError, UnavailableError } from '../../src/errors.js';
import { createMailer, type MailerOptions, type OutgoingMail, type SmtpSettings } from '../../src/ops/notify/email.js';
import { renderNotification } from '../../src/ops/notify/templates.js';
import { SMTP_PASSWORD, smtpPki, startSmtp as startSmtpServer, type SmtpFixture, type SmtpPki } from '../support/smtp-server.js';

const PASSWORD = SMTP_PASSWORD;
const FROM = 'strongroom@mail.example.test';

let pki: SmtpPki;
const servers: SmtpFixture[] = [];

before(async () => {
  pki = await smtpPki();
});
after(() => Promise.all(servers.map((s) => s.close())));

async function startSmtp(options: SMTPServerOptions = {}): Promise<SmtpFixture> {
  const fixture = await startSmtpServer(pki, options);
  servers.push(fixture);
  return fixture;
}

function settings(port: number, overrides: Partial<SmtpSettings> = {}): SmtpSettings {
  return { host: 'localhost', port, security: 'starttls', username: null, password: null, from: FROM, ca: pki.ca, ...overrides };
}

function message(overrides: Partial<OutgoingMail> = {}): OutgoingMail {
  const mail = renderNotification('access.requested', {
    tenantName: 'Acme',
    tenantId: 't_acme',
    linkUrl: 'https://console.example.test/',
    details: { operatorId: 'op_ABCDEF', requestId: 'ar_123', occurredAt: '2026-11-29T10:00:00Z' },
  });
  return { id: 'n_0123456789', to: ['admin@acme.example.test'], ...mail, ...overrides };
}

async function send(s: SmtpSettings, m: OutgoingMail = message(), options: MailerOptions = { timeoutMs: 5000 }) {
  const mailer = createMailer(s, options);
  try {
    return await mailer.send(m);
  } finally {
    mailer.close();
  }
}

/** The decoded parts of a multipart message, by content type, with LF line ends (SMTP carries CRLF). */
function mimeParts(raw: string): Map<string, string> {
  const boundary = /boundary="?([^";\r\n]+)"?/.exec(raw)?.[1];
  assert.ok(boundary, 'a multipart message');
  const parts = new Map<string, string>();
  for (const part of raw.split(`--${boundary}`).slice(1, -1)) {
    const [head = '', ...body] = part.trim().split('\r\n\r\n');
    const type = /^Content-Type: ([^;\r\n]+)/im.exec(head)?.[1] ?? '';
    const encoding = /^Content-Transfer-Encoding: (\S+)/im.exec(head)?.[1]?.toLowerCase();
    parts.set(type, decode(body.join('\r\n\r\n'), encoding).replace(/\r\n/g, '\n'));
  }
  return parts;
}

function decode(content: string, encoding: string | undefined): string {
  if (encoding === 'base64') return Buffer.from(content, 'base64').toString('utf8');
  if (encoding !== 'quoted-printable') return content;
  const bytes = content.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  return Buffer.from(bytes, 'latin1').toString('utf8');
}

async function refusal(promise: Promise<unknown>): Promise<UnavailableError> {
  const error = await promise.then(
    () => assert.fail('the send should fail'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof UnavailableError, `an UnavailableError, got ${String(error)}`);
  assert.equal(error.code, 'unavailable');
  assert.ok(!error.message.includes(PASSWORD), 'the password is not in the error');
  return error;
}

describe('SMTP delivery', () => {
  test('STARTTLS delivery reaches the envelope recipients with From, subject, text, HTML and the notification id', async () => {
    const smtp = await startSmtp();
    const m = message({ to: ['admin@acme.example.test', 'owner@acme.example.test'] });
    const result = await send(settings(smtp.port), m);

    assert.deepEqual(result.accepted, m.to);
    assert.deepEqual(result.rejected, []);
    assert.equal(result.messageId, '<n_0123456789@mail.example.test>');
    assert.equal(smtp.received.length, 1);
    const got = smtp.received[0]!;
    assert.equal(got.secure, true, 'the message travelled over TLS');
    assert.equal(got.from, FROM);
    assert.deepEqual(got.to, m.to);
    const head = got.raw.slice(0, got.raw.indexOf('\r\n\r\n'));
    assert.match(head, /^From: strongroom@mail\.example\.test$/m);
    assert.match(head, /^To: admin@acme\.example\.test, owner@acme\.example\.test$/m);
    assert.match(head, /^Subject: \[Strongroom\] Access to Acme requested by operator op_ABCDEF$/m);
    assert.match(head, /^X-Strongroom-Notification-Id: n_0123456789$/im);
    assert.match(head, /^Message-ID: <n_0123456789@mail\.example\.test>$/im);
    assert.match(head, /^Content-Type: multipart\/alternative;/m);
    const parts = mimeParts(got.raw);
    assert.equal(parts.get('text/plain')?.trim(), m.text.trim());
    assert.equal(parts.get('text/html')?.trim(), m.html.trim());
  });

  test('AUTH PLAIN over TLS logs in with the right password; a wrong one fails without showing it', async () => {
    const smtp = await startSmtp({ authOptional: false });
    await send(settings(smtp.port, { username: 'strongroom', password: PASSWORD }));
    assert.deepEqual(smtp.logins, [{ method: 'PLAIN', username: 'strongroom', secure: true }]);
    assert.equal(smtp.received.length, 1);

    const wrong = 'not the password';
    const error = await refusal(send(settings(smtp.port, { username: 'strongroom', password: wrong })));
    assert.match(error.message, /refused the credentials of strongroom/);
    assert.ok(!error.message.includes(wrong));
    assert.equal(smtp.received.length, 1, 'nothing more was delivered');
  });

  test('implicit TLS (security: tls) delivers', async () => {
    const smtp = await startSmtp({ secure: true });
    const result = await send(settings(smtp.port, { security: 'tls', username: 'strongroom', password: PASSWORD }));
    assert.deepEqual(result.accepted, ['admin@acme.example.test']);
    assert.equal(smtp.received[0]?.secure, true);
    assert.equal(smtp.logins[0]?.secure, true);
  });

  test('a server that does not offer STARTTLS is refused: no login, nothing delivered, a clear error', async () => {
    // A server that would take the password and the message in clear, were they offered.
    const smtp = await startSmtp({ disabledCommands: ['STARTTLS'], allowInsecureAuth: true });
    const error = await refusal(send(settings(smtp.port, { username: 'strongroom', password: PASSWORD })));
    assert.match(error.message, /did not offer STARTTLS, and TLS is required: nothing was sent/);
    assert.deepEqual(smtp.logins, []);
    assert.deepEqual(smtp.received, []);
  });

  test('a server whose certificate the client does not trust is refused, with STARTTLS and implicit TLS', async () => {
    const starttls = await startSmtp();
    const implicit = await startSmtp({ secure: true });
    for (const [smtp, security] of [[starttls, 'starttls'], [implicit, 'tls']] as const) {
      const error = await refusal(send(settings(smtp.port, { security, ca: null, username: 'strongroom', password: PASSWORD })));
      assert.match(error.message, /^TLS with the SMTP server localhost:\d+ failed: nothing was sent \(.*certificate/, error.message);
      assert.deepEqual(smtp.logins, []);
      assert.deepEqual(smtp.received, []);
    }
  });

  test('connectTo: the connection goes to the address it returns and the certificate is checked against the host name', async () => {
    const smtp = await startSmtp();
    const asked: string[] = [];
    const connectTo = async (host: string) => {
      asked.push(host);
      return '127.0.0.1';
    };
    // Not in DNS: delivery works only through the address connectTo gives.
    await send(settings(smtp.port, { host: 'smtp.example.test' }), message(), { connectTo, timeoutMs: 5000 });
    assert.deepEqual(asked, ['smtp.example.test']);
    assert.equal(smtp.received.length, 1);

    // The certificate names 127.0.0.1 too, so only a check against the host name refuses this.
    const error = await refusal(send(settings(smtp.port, { host: 'other.example.test' }), message(), { connectTo, timeoutMs: 5000 }));
    assert.match(error.message, /^TLS with the SMTP server other\.example\.test:\d+ failed: .*not in the cert's altnames/);
    assert.equal(smtp.received.length, 1, 'nothing more was delivered');
  });

  test('some recipients refused: the others get the message and the result names the refused; all refused: the send fails', async () => {
    const smtp = await startSmtp({
      onRcptTo(address, _session, callback) {
        callback(address.address.startsWith('nobody@') ? Object.assign(new Error('No such user'), { responseCode: 550 }) : null);
      },
    });
    const result = await send(settings(smtp.port), message({ to: ['admin@acme.example.test', 'nobody@acme.example.test'] }));
    assert.deepEqual(result.accepted, ['admin@acme.example.test']);
    assert.deepEqual(result.rejected, ['nobody@acme.example.test']);
    assert.deepEqual(smtp.received[0]?.to, ['admin@acme.example.test']);

    const error = await refusal(send(settings(smtp.port), message({ to: ['nobody@acme.example.test'] })));
    assert.match(error.message, /refused the message/);
    assert.equal(smtp.received.length, 1);
  });

  test('a server that never greets fails the send after timeoutMs, and close() aborts a send in flight', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    try {
      const started = Date.now();
      const timedOut = await refusal(send(settings(port), message(), { timeoutMs: 300 }));
      assert.match(timedOut.message, /ETIMEDOUT/);
      assert.ok(Date.now() - started < 3000, 'bounded by timeoutMs');

      const mailer = createMailer(settings(port), { timeoutMs: 60_000 });
      const sending = mailer.send(message());
      await new Promise((resolve) => setTimeout(resolve, 100));
      mailer.close();
      assert.match((await refusal(sending)).message, /aborted: the mailer is closed/);
      await assert.rejects(mailer.send(message()), /the mailer is closed/);
    } finally {
      sockets.forEach((socket) => socket.destroy());
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('a recipient list smuggled into one address, or a bad notification id, is refused before connecting', async () => {
    const mailer = createMailer(settings(1), { timeoutMs: 1000 });
    await assert.rejects(mailer.send(message({ to: ['admin@acme.example.test, evil@attacker.example'] })), BadRequestError);
    await assert.rejects(mailer.send(message({ to: ['Eve <eve@attacker.example>'] })), BadRequestError);
    await assert.rejects(mailer.send(message({ to: [] })), BadRequestError);
    await assert.rejects(mailer.send(message({ id: 'n_1\r\nBcc: eve@attacker.example' })), BadRequestError);
    mailer.close();
  });
});

describe('notification templates', () => {
  const context = {
    tenantName: 'Acme',
    tenantId: 't_acme',
    linkUrl: 'https://console.example.test/',
    details: { operatorId: 'op_ABCDEF', actorId: 'member:m_1', requestId: 'ar_123', occurredAt: '2026-11-29T10:00:00Z', expiresAt: '2026-11-29T11:00:00Z', purgeAt: '2027-01-28T00:00:00Z' },
  };

  test('every event names the tenant, says when and who, and links back to the console in both bodies', () => {
    for (const event of ['access.requested', 'access.approved', 'access.breakglass', 'tenant.terminated', 'tenant.purge_scheduled', 'tenant.purged', 'webhook.test', 'something.new']) {
      const mail = renderNotification(event, context);
      assert.match(mail.subject, /^\[Strongroom\] /, event);
      for (const body of [mail.text, mail.html]) {
        assert.ok(body.includes('Acme'), `${event} names the tenant`);
        assert.ok(body.includes('https://console.example.test/'), `${event} links back`);
        assert.match(body, /20(26|27)-\d\d-\d\d at \d\d:\d\d UTC/, `${event} says when`);
      }
    }
    const requested = renderNotification('access.requested', context);
    assert.match(requested.text, /Operator op_ABCDEF asked to access the data of Acme \(tenant t_acme\) on 2026-11-29 at 10:00 UTC\./);
    assert.match(requested.text, /Request: ar_123\./);
    assert.match(requested.text, /Approve or deny the request in the console\./);
    assert.match(renderNotification('access.approved', context).text, /revoke it in the console/);
    assert.match(renderNotification('access.breakglass', context).text, /by member:m_1, without the approval of your admins \(break-glass\); the grant ends 2026-11-29 at 11:00 UTC\./);
    assert.match(renderNotification('something.new', context).subject, /Notification: something\.new for Acme/);
    assert.match(renderNotification('constructor', context).subject, /Notification: constructor for Acme/);
  });

  test('interpolated values are HTML-escaped in the HTML body', () => {
    const mail = renderNotification('access.approved', { ...context, tenantName: '<script>alert("x")</script>', details: { operatorId: 'op_"><img src=x>' } });
    assert.ok(!mail.html.includes('<script>'));
    assert.ok(!mail.html.includes('<img'));
    assert.ok(mail.html.includes('&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;'));
    assert.ok(mail.text.includes('<script>alert("x")</script>'), 'the plain-text body shows the name as it is');
  });

  test('line breaks in values are stripped from the subject and cannot forge lines in the bodies', () => {
    const mail = renderNotification('access.requested', { ...context, tenantName: 'Acme\r\nBcc: eve@attacker.example', details: { operatorId: 'op_1\nX-Evil: 1\u2028' } });
    assert.doesNotMatch(mail.subject, /[\r\n\u2028]/);
    assert.equal(mail.subject, '[Strongroom] Access to Acme Bcc: eve@attacker.example requested by operator op_1 X-Evil: 1 ');
    assert.ok(!mail.text.split('\n').some((line) => line.startsWith('Bcc:') || line.startsWith('X-Evil:')));
  });

  test('only an https link is linked, and none without linkUrl', () => {
    for (const linkUrl of [null, 'javascript:alert(1)', 'http://console.example.test/']) {
      const mail = renderNotification('tenant.purged', { ...context, linkUrl });
      assert.ok(!mail.html.includes('<a '), String(linkUrl));
      assert.ok(!mail.text.includes('Console:'), String(linkUrl));
    }
  });

  test('without a tenant, messages speak of the deployment; missing details are left out', () => {
    const mail = renderNotification('webhook.test', { tenantName: null, tenantId: null, linkUrl: null, details: {} });
    assert.equal(mail.subject, '[Strongroom] Test notification');
    assert.match(mail.text, /notifications for your Strongroom deployment reach you/);
    const bare = renderNotification('access.approved', { tenantName: 'Acme', tenantId: null, linkUrl: null, details: { operatorId: 'op_1' } });
    assert.match(bare.text, /^Operator op_1 may access the data of Acme\.$/m);
    assert.doesNotMatch(bare.text, /Request:/);
  });
});
