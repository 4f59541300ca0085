import { KeyObject, X509Certificate, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import fs from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { ConfigError, IntegrityError } from '../../errors.js';
import { writeFileAtomic } from '../../files/atomic-file.js';
import { x509 } from './x509.js';

/**
 * The embedded default's local certificate authority: a CA that lives only in `dir` and the
 * server certificate it signs, so `npm start` serves HTTPS with no setup. Trusting `caCertFile`
 * in a client (`curl --cacert`, a browser's trust store) makes the connection fully verified.
 *
 * Layout (`dir` is 0700):
 *   ca-cert.pem      0644  public; meant to be copied into clients' trust stores
 *   ca-key.pem       0600  never read by anything but this module; written last (its presence
 *                          marks a complete CA)
 *   server-cert.pem  0600
 *   server-key.pem   0600
 */
export interface LocalTlsFiles {
  caCertFile: string;
  certFile: string;
  keyFile: string;
}

export interface LocalTlsOptions {
  /** DNS names (or IP literals) clients use; 127.0.0.1 and ::1 are always included. */
  hostnames: string[];
  clock?: () => Date;
}

const FILE = {
  caCert: 'ca-cert.pem',
  caKey: 'ca-key.pem',
  serverCert: 'server-cert.pem',
  serverKey: 'server-key.pem',
} as const;

const DAY_MS = 86_400_000;
const CA_LIFETIME_MS = 3650 * DAY_MS;
/** Under the CA/Browser Forum's 398 days, so clients that enforce it (Apple, Chrome) accept it. */
const SERVER_LIFETIME_MS = 397 * DAY_MS;
const RENEW_BEFORE_MS = 30 * DAY_MS;
/** Clients whose clock runs a little behind ours still accept a fresh certificate. */
const BACKDATE_MS = 5 * 60_000;
const LOOPBACK_IPS = ['127.0.0.1', '::1'];

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;

const DNS_NAME =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** Calls on one directory run one after another, so two callers never race to create a CA. */
const queues = new Map<string, Promise<unknown>>();

/**
 * Creates (first call) or reuses the local CA and server certificate in `dir`. The server
 * certificate is reissued when it expires within 30 days, lacks a requested hostname, or no longer
 * matches its key or the CA; the CA is replaced only when it expires within 30 days.
 *
 * @example
 * const { certFile, keyFile, caCertFile } = await ensureLocalTls('.strongroom/tls', { hostnames: ['localhost'] });
 */
export async function ensureLocalTls(dir: string, opts: LocalTlsOptions): Promise<LocalTlsFiles> {
  const hostnames = normalizeHostnames(opts.hostnames);
  const clock = opts.clock ?? (() => new Date());
  const root = path.resolve(dir);
  const previous = queues.get(root) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(() => ensureInDirectory(root, hostnames, clock));
  queues.set(root, run);
  try {
    return await run;
  } finally {
    if (queues.get(root) === run) queues.delete(root);
  }
}

async function ensureInDirectory(root: string, hostnames: string[], clock: () => Date): Promise<LocalTlsFiles> {
  await prepareDirectory(root);
  const files = {
    caCertFile: path.join(root, FILE.caCert),
    certFile: path.join(root, FILE.serverCert),
    keyFile: path.join(root, FILE.serverKey),
  };
  const now = clock();
  const ca = (await loadCa(root, now)) ?? (await createCa(root, now));
  if (!(await serverIsCurrent(files, ca.cert, hostnames, now))) {
    await issueServerCertificate(files, ca, hostnames, now);
  }
  return files;
}

function normalizeHostnames(hostnames: string[]): string[] {
  const names = new Set<string>();
  for (const raw of hostnames) {
    const name = raw.toLowerCase();
    if (!DNS_NAME.test(name) && isIP(name) === 0) {
      throw new ConfigError('server.publicHost', `${JSON.stringify(raw)} is not a DNS name or IP address`);
    }
    names.add(name);
  }
  return [...names];
}

async function prepareDirectory(root: string): Promise<void> {
  await fs.mkdir(root, { recursive: true, mode: 0o700 });
  const stat = await fs.stat(root);
  if (!stat.isDirectory()) throw new ConfigError('dataDir', `${root} is not a directory`);
  // Another account that owns the folder could swap in its own CA key or read ours.
  if (process.getuid && stat.uid !== process.getuid()) {
    throw new ConfigError('dataDir', `${root} belongs to another user`);
  }
  if ((stat.mode & 0o777) !== 0o700) await fs.chmod(root, 0o700);
}

interface LocalCa {
  cert: X509Certificate;
  key: KeyObject;
}

async function loadCa(root: string, now: Date): Promise<LocalCa | undefined> {
  const keyFile = path.join(root, FILE.caKey);
  const keyPem = await readIfExists(keyFile);
  // No key: nothing was created yet, or a crash came before the key (written last) landed.
  if (keyPem === undefined) return undefined;
  const certPem = await readIfExists(path.join(root, FILE.caCert));
  if (certPem === undefined) {
    throw new IntegrityError(`${FILE.caKey} exists without ${FILE.caCert} in ${root}; remove the folder to create a new local CA`);
  }
  let ca: LocalCa;
  try {
    ca = { cert: new X509Certificate(certPem), key: createPrivateKey(keyPem) };
  } catch {
    throw new IntegrityError(`the local CA in ${root} cannot be parsed; remove the folder to create a new one`);
  }
  // A swapped key or certificate must not be used to sign silently: someone has been in the folder.
  if (!ca.cert.ca || !ca.cert.checkPrivateKey(ca.key)) {
    throw new IntegrityError(`the local CA key and certificate in ${root} do not match; remove the folder to create a new one`);
  }
  await tightenMode(keyFile, 0o600);
  // An expiring CA cannot sign a server certificate that outlives it: start a new one.
  if (Date.parse(ca.cert.validTo) - now.getTime() < RENEW_BEFORE_MS) return undefined;
  return ca;
}

async function createCa(root: string, now: Date): Promise<LocalCa> {
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    // The suffix tells apart the local CAs of several installs in one trust store.
    name: `CN=Strongroom local CA ${randomBytes(6).toString('hex')}`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + CA_LIFETIME_MS),
    signingAlgorithm: ECDSA_SHA256,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = cert.toString('pem');
  const key = KeyObject.from(keys.privateKey);
  await writeFileAtomic(path.join(root, FILE.caCert), certPem, 0o644);
  await writeFileAtomic(path.join(root, FILE.caKey), pkcs8Pem(key), 0o600);
  return { cert: new X509Certificate(certPem), key };
}

async function serverIsCurrent(files: LocalTlsFiles, caCert: X509Certificate, hostnames: string[], now: Date): Promise<boolean> {
  const certPem = await readIfExists(files.certFile);
  const keyPem = await readIfExists(files.keyFile);
  if (certPem === undefined || keyPem === undefined) return false;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return false;
  } catch {
    return false; // A damaged server pair is simply reissued; the CA is the trust anchor.
  }
  if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) return false;
  const t = now.getTime();
  if (Date.parse(cert.validFrom) > t || Date.parse(cert.validTo) - t < RENEW_BEFORE_MS) return false;
  for (const name of [...hostnames, ...LOOPBACK_IPS]) {
    const covered = isIP(name) ? cert.checkIP(name) : cert.checkHost(name, { subject: 'never', wildcards: false });
    if (covered === undefined) return false;
  }
  await tightenMode(files.keyFile, 0o600);
  return true;
}

async function issueServerCertificate(files: LocalTlsFiles, ca: LocalCa, hostnames: string[], now: Date): Promise<void> {
  const caSigningKey = await webcrypto.subtle.importKey(
    'pkcs8',
    ca.key.export({ type: 'pkcs8', format: 'der' }),
    EC_P256,
    false,
    ['sign'],
  );
  const caCert = new x509.X509Certificate(ca.cert.raw);
  const caKeyId = caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  const caNotAfter = Date.parse(ca.cert.validTo);
  const altNames = [...new Set([...hostnames, ...LOOPBACK_IPS])].map((name) => ({
    type: isIP(name) ? ('ip' as const) : ('dns' as const),
    value: name,
  }));
  const cert = await x509.X509CertificateGenerator.create({
    subject: 'CN=Strongroom server',
    issuer: caCert.subjectName,
    notBefore,
    notAfter: new Date(Math.min(notBefore.getTime() + SERVER_LIFETIME_MS, caNotAfter)),
    signingAlgorithm: ECDSA_SHA256,
    publicKey: keys.publicKey,
    signingKey: caSigningKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(altNames),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ...(caKeyId ? [new x509.AuthorityKeyIdentifierExtension(caKeyId)] : []),
    ],
  });
  // Certificate first, key last, as for the CA: a crash in between leaves a mismatched pair,
  // which the next call detects and reissues.
  await writeFileAtomic(files.certFile, cert.toString('pem'), 0o600);
  await writeFileAtomic(files.keyFile, pkcs8Pem(KeyObject.from(keys.privateKey)), 0o600);
}

function pkcs8Pem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function tightenMode(file: string, mode: number): Promise<void> {
  const stat = await fs.stat(file);
  if ((stat.mode & 0o777) !== mode) await fs.chmod(file, mode);
}
