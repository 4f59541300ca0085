import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import { ConfigError } from '../../errors.js';
import { secureContextOptions } from './tls-policy.js';

/**
 * Bring-your-own certificate, reloaded without a restart. Polls both files (fs.watch misses
 * atomic renames on several platforms) and hands over a new pair only once it is complete and
 * valid; anything else is reported through onError while the listener keeps its current pair.
 */
export interface CertificatePair {
  cert: Buffer;
  key: Buffer;
}

export interface WatchCertificateOptions {
  certFile: string;
  keyFile: string;
  onReload: (pair: CertificatePair) => void;
  onError: (err: Error) => void;
  /** How often the files are checked; default 1000 ms. A change is acted on one check later. */
  intervalMs?: number;
}

/**
 * @example
 * const watcher = watchCertificate({ certFile, keyFile, onError: (e) => log.error(e),
 *   onReload: (pair) => reloadServerCertificate(app.server as tls.Server, pair) });
 */
export function watchCertificate(opts: WatchCertificateOptions): { close(): void } {
  const intervalMs = opts.intervalMs ?? 1000;
  // What the listener serves now: the files as they are at start, which the caller loaded.
  let served = readPair(opts).fingerprint;
  let lastStat = statFingerprint(opts);
  // A changed pair waits one interval to be read again unchanged: an operator copying the
  // certificate, then the key, must not trip an alarm in between.
  let pending: string | undefined;
  let lastReported: string | undefined;

  const check = () => {
    const stat = statFingerprint(opts);
    if (stat === lastStat && pending === undefined) return;
    lastStat = stat;
    const pair = readPair(opts);
    if (pair.fingerprint === served) {
      pending = undefined;
      lastReported = undefined;
      return;
    }
    if (pair.fingerprint === lastReported) {
      pending = undefined;
      return;
    }
    if (pair.fingerprint !== pending) {
      pending = pair.fingerprint;
      return;
    }
    pending = undefined;
    try {
      if (pair.error) throw pair.error;
      validatePair(pair.files, opts.certFile);
      opts.onReload(pair.files);
      served = pair.fingerprint;
      lastReported = undefined;
    } catch (err) {
      // Reported once per distinct content, so a bad pair left in place does not flood the log.
      lastReported = pair.fingerprint;
      report(err);
    }
  };

  const report = (err: unknown) => {
    try {
      opts.onError(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // A throwing onError must not take the server down from inside a timer.
    }
  };

  let lastFailure: string | undefined;
  const timer = setInterval(() => {
    try {
      check();
      lastFailure = undefined;
    } catch (err) {
      // e.g. EACCES from stat: keep serving and keep watching, and say so once.
      const failure = String(err);
      if (failure !== lastFailure) report(err);
      lastFailure = failure;
    }
  }, intervalMs);
  timer.unref();
  return { close: () => clearInterval(timer) };
}

/**
 * Makes a running HTTPS/TLS server present `pair` on new connections; open connections keep
 * the old one. The TLS policy is applied again because a new context starts from node's defaults.
 */
export function reloadServerCertificate(server: tls.Server, pair: CertificatePair): void {
  server.setSecureContext(secureContextOptions(pair));
}

type PairRead =
  | { fingerprint: string; files: CertificatePair; error?: undefined }
  | { fingerprint: string; files?: undefined; error: Error };

function readPair(opts: WatchCertificateOptions): PairRead {
  try {
    const files = { cert: fs.readFileSync(opts.certFile), key: fs.readFileSync(opts.keyFile) };
    const fingerprint = createHash('sha256').update(files.cert).update('\0').update(files.key).digest('hex');
    return { fingerprint, files };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    return { fingerprint: `error:${code}`, error: new ConfigError('server.tls', `cannot read the certificate or key (${code})`) };
  }
}

function statFingerprint(opts: WatchCertificateOptions): string {
  return [opts.certFile, opts.keyFile]
    .map((file) => {
      const s = fs.statSync(file, { throwIfNoEntry: false, bigint: true });
      return s ? `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}` : 'missing';
    })
    .join('|');
}

function validatePair(pair: CertificatePair, certFile: string): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pair.cert);
  } catch {
    throw new ConfigError('server.tls.certFile', `${certFile} is not a PEM certificate`);
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(pair.key));
  } catch {
    throw new ConfigError('server.tls.keyFile', 'the key is not an unencrypted PEM private key');
  }
  if (!matches) throw new ConfigError('server.tls.keyFile', `the key does not belong to ${certFile}`);
  if (Date.parse(cert.validTo) <= Date.now()) {
    throw new ConfigError('server.tls.certFile', `${certFile} expired on ${cert.validTo}`);
  }
  try {
    // The same check setSecureContext makes, so onReload is not handed a pair it will reject.
    tls.createSecureContext(secureContextOptions(pair));
  } catch (err) {
    throw new ConfigError('server.tls', `the pair cannot be used for TLS: ${(err as Error).message}`);
  }
}
