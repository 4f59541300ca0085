// A real SMTP server (smtp-server) on 127.0.0.1 with a certificate from a local CA, recording what
// it accepts: the tests' mail server for e-mail notifications.
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { ensureLocalTls } from '../../src/http/tls/local-ca.js';
import { tempDirs } from './cli-process.js';

const tempDir = tempDirs('strongroom-smtp-');
export const SMTP_PASSWORD = 'correct horse battery staple';

export interface SmtpPki {
  key: Buffer;
  cert: Buffer;
  ca: Buffer[];
  caFile: string;
}

/** A CA and a server certificate for `hostnames`. */
export async function smtpPki(hostnames = ['localhost', 'smtp.example.test']): Promise<SmtpPki> {
  const files = await ensureLocalTls(tempDir(), { hostnames });
  return { key: await readFile(files.keyFile), cert: await readFile(files.certFile), ca: [await readFile(files.caCertFile)], caFile: files.caCertFile };
}

export interface Received {
  from: string | null;
  to: string[];
  raw: string;
  secure: boolean;
}

export interface SmtpFixture {
  port: number;
  received: Received[];
  logins: { method: string; username: string | undefined; secure: boolean }[];
  /** Connection errors the server saw, e.g. a client that hung up on its certificate. */
  errors: Error[];
  close(): Promise<void>;
}

/** A real SMTP server on 127.0.0.1 with `pki`'s certificate; it records what it accepts. The user `strongroom` logs in with SMTP_PASSWORD. */
export async function startSmtp(pki: SmtpPki, options: SMTPServerOptions = {}): Promise<SmtpFixture> {
  const received: Received[] = [];
  const logins: SmtpFixture['logins'] = [];
  const server = new SMTPServer({
    key: pki.key,
    cert: pki.cert,
    logger: false,
    disableReverseLookup: true,
    authOptional: true,
    onAuth(auth, session, callback) {
      logins.push({ method: auth.method, username: auth.username, secure: session.secure });
      if (auth.username === 'strongroom' && auth.password === SMTP_PASSWORD) return callback(null, { user: auth.username });
      callback(new Error('Invalid username or password'));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const mailFrom = session.envelope.mailFrom;
        received.push({
          from: mailFrom ? mailFrom.address : null,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
          secure: session.secure,
        });
        callback();
      });
    },
    ...options,
  });
  const errors: Error[] = [];
  server.on('error', (error) => errors.push(error));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const fixture: SmtpFixture = {
    port: (server.server.address() as AddressInfo).port,
    received,
    logins,
    errors,
    close: () => new Promise<void>((resolve) => server.close(resolve)),
  };
  return fixture;
}

