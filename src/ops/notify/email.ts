import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import nodemailer, { type NodemailerError, type SMTPTransportOptions } from 'nodemailer';
import { BadRequestError, ConfigError, UnavailableError } from '../../errors.js';

/** The SMTP server notifications go through: the `smtp` configuration with the password resolved and `caFile` read. */
export interface SmtpSettings {
  host: string;
  port: number;
  /** `starttls`: upgrade a plain connection (port 587), refused if the server does not offer it; `tls`: implicit TLS (port 465). */
  security: 'starttls' | 'tls';
  username: string | null;
  password: string | null;
  from: string;
  /** CA certificates (PEM) trusted besides the system's, for a server on a private CA. */
  ca: Buffer[] | null;
}

export interface MailerOptions {
  /**
   * Resolves `host` to the one address to connect to, after the egress check: the connection
   * goes to that address while the certificate is still verified against `host` (TLS server
   * name), so a DNS answer cannot steer mail to a refused network. Its errors reach `send`'s
   * caller unchanged. Without it, the host name is resolved by nodemailer.
   */
  connectTo?: (host: string) => Promise<string>;
  /** Limit of each phase: connecting, the greeting, the TLS upgrade, and any silence on the socket. */
  timeoutMs: number;
}

export interface OutgoingMail {
  /** The notification id, sent as `X-Strongroom-Notification-Id` and in the `Message-ID`, so receivers can drop a redelivery. */
  id: string;
  to: string[];
  subject: string;
  text: string;
  html: string;
}

export interface DeliveryResult {
  messageId: string;
  accepted: string[];
  /** Recipients the server refused while accepting the others. */
  rejected: string[];
}

export interface Mailer {
  /** Sends one message over its own verified TLS connection; throws `UnavailableError` when nothing was accepted. */
  send(message: OutgoingMail): Promise<DeliveryResult>;
  /** Aborts the sends in flight; later sends fail. */
  close(): void;
}

/** A bare address: no display name, comma or bracket that would smuggle in extra recipients. */
const ADDRESS = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+$/;
const NOTIFICATION_ID = /^[A-Za-z0-9_.-]{1,100}$/;
/** Codes of a failed TLS handshake or certificate check (ERR_TLS_CERT_ALTNAME_INVALID, UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_HAS_EXPIRED…). */
const TLS_FAILURE = /^ERR_(TLS|SSL)_|CERT|^UNABLE_TO_/;

/**
 * A mailer for notifications. TLS is required and verified in both modes (TLS 1.2 or later,
 * the certificate checked against `settings.host`); it never logs.
 *
 * @example
 * const mailer = createMailer({ host: 'smtp.example.com', port: 587, security: 'starttls', username: 'strongroom',
 *   password, from: 'strongroom@example.com', ca: null }, { timeoutMs: 10_000 });
 * await mailer.send({ id: 'n_1', to: ['admin@example.com'], ...renderNotification('access.requested', context) });
 */
export function createMailer(settings: SmtpSettings, options: MailerOptions): Mailer {
  checkSettings(settings);
  const fromDomain = settings.from.slice(settings.from.lastIndexOf('@') + 1);
  const inFlight = new Set<AbortController>();
  let closed = false;

  return {
    async send(message) {
      if (closed) throw new UnavailableError('the mailer is closed');
      checkMessage(message);
      const address = options.connectTo ? await options.connectTo(settings.host) : settings.host;
      if (closed) throw new UnavailableError('the mailer is closed');
      const transport = nodemailer.createTransport(transportOptions(settings, address, options.timeoutMs));
      const abort = new AbortController();
      inFlight.add(abort);
      try {
        const info = await transport.sendMail({
          from: settings.from,
          to: message.to,
          envelope: { from: settings.from, to: message.to },
          // Header injection: a subject may come from elsewhere than renderNotification.
          subject: message.subject.replace(/[\r\n]+/g, ' '),
          text: message.text,
          html: message.html,
          // The same id on every attempt: delivery is at least once, and receivers de-duplicate on it.
          messageId: `<${message.id}@${fromDomain}>`,
          headers: { 'X-Strongroom-Notification-Id': message.id },
          signal: abort.signal,
        });
        return { messageId: info.messageId, accepted: info.accepted.map(String), rejected: info.rejected.map(String) };
      } catch (error) {
        throw deliveryError(error as NodemailerError, settings);
      } finally {
        inFlight.delete(abort);
        transport.close();
      }
    },
    close() {
      closed = true;
      for (const abort of inFlight) abort.abort();
      inFlight.clear();
    },
  };
}

function checkSettings(settings: SmtpSettings): void {
  if (!ADDRESS.test(settings.from)) throw new ConfigError('smtp.from', 'must be a bare e-mail address');
  if ((settings.username === null) !== (settings.password === null)) {
    throw new ConfigError('smtp.password', 'a username and a password go together');
  }
}

function checkMessage(message: OutgoingMail): void {
  if (!NOTIFICATION_ID.test(message.id)) throw new BadRequestError('a notification id is 1-100 letters, digits, dots, dashes or underscores');
  if (message.to.length === 0) throw new BadRequestError('a message needs at least one recipient');
  const invalid = message.to.find((to) => !ADDRESS.test(to));
  if (invalid !== undefined) throw new BadRequestError(`not a bare e-mail address: ${JSON.stringify(invalid)}`);
}

function transportOptions(settings: SmtpSettings, address: string, timeoutMs: number): SMTPTransportOptions {
  return {
    host: address,
    port: settings.port,
    secure: settings.security === 'tls',
    // Without it a man in the middle who strips STARTTLS from the reply would get the password and the mail in clear.
    requireTLS: settings.security === 'starttls',
    tls: {
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
      // Node's `ca` replaces the system roots; the configured CA is meant to come on top of them.
      ca: settings.ca ? [...rootCertificates, ...settings.ca] : undefined,
      // The certificate must name the configured host even when `address` is an IP from connectTo.
      // (A server name may not be an IP address; Node then checks the certificate against the IP.)
      servername: isIP(settings.host) ? undefined : settings.host,
    },
    auth: settings.username !== null && settings.password !== null ? { user: settings.username, pass: settings.password } : undefined,
    // With credentials configured, never send unauthenticated because the server stopped advertising AUTH.
    forceAuth: settings.username !== null,
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    dnsTimeout: timeoutMs,
    logger: false,
    debug: false,
    // Messages are plain strings; nothing may make nodemailer read a file or fetch a URL.
    disableFileAccess: true,
    disableUrlAccess: true,
  };
}

/** A typed error that names the server and what went wrong; the password never appears in it. */
function deliveryError(error: NodemailerError, settings: SmtpSettings): UnavailableError {
  const server = `the SMTP server ${settings.host}:${settings.port}`;
  const detail = redact(error.message ?? String(error), settings.password);
  if (error.code === 'ETLS' && error.command === 'STARTTLS' && error.response) {
    return new UnavailableError(`${server} did not offer STARTTLS, and TLS is required: nothing was sent (${detail})`);
  }
  // A refused certificate surfaces as a socket error carrying OpenSSL's or Node's code.
  if (error.code === 'ETLS' || TLS_FAILURE.test(error.originalCode ?? '')) {
    return new UnavailableError(`TLS with ${server} failed: nothing was sent (${detail})`);
  }
  switch (error.code) {
    case 'EAUTH':
      return new UnavailableError(`${server} refused the credentials of ${settings.username ?? 'no user'} (${detail})`);
    case 'EENVELOPE':
      return new UnavailableError(`${server} refused the message (${detail})`);
    case 'EABORT':
      return new UnavailableError(`sending through ${server} was aborted: the mailer is closed`);
    default:
      return new UnavailableError(`sending through ${server} failed (${error.code ?? 'error'}: ${detail})`);
  }
}

/** Server replies end up in errors, which get logged; keep them one short line without the password. */
function redact(text: string, password: string | null): string {
  const hidden = password ? text.split(password).join('[redacted]') : text;
  return hidden.replace(/\s+/g, ' ').slice(0, 300);
}
