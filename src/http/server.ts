import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Core } from '../core/context.js';
import { backgroundJobs } from '../ops/background.js';
import { startJobRunner, type JobRunner } from '../ops/jobs.js';
import { createAuthenticator } from '../identity/authenticate.js';
import { buildApp, type HttpsApp } from './app.js';
import { reloadServerCertificate, watchCertificate } from './tls/cert-reloader.js';
import { ensureLocalTls } from './tls/local-ca.js';
import { startRedirectListener } from './tls/redirect-listener.js';

export interface RunningServer {
  app: HttpsApp;
  jobs: JobRunner;
  url: string;
  port: number;
  /** Present when the embedded default made its own certificate authority. */
  caCertFile: string | null;
  close(): Promise<void>;
}

/**
 * Serves the API over HTTPS: with the operator's certificate (reloaded when its files change) or
 * with one from the local CA in the data directory. The optional plain-HTTP listener only redirects.
 */
export async function startServer(config: Config, core: Core, logger: Logger): Promise<RunningServer> {
  const { server } = config;
  let certFile = server.tls.certFile;
  let keyFile = server.tls.keyFile;
  let caCertFile: string | null = null;
  if (!certFile || !keyFile) {
    const local = await ensureLocalTls(join(config.dataDir, 'tls'), { hostnames: [server.publicHost] });
    ({ certFile, keyFile, caCertFile } = local);
  }
  if (config.auth.firebase.emulatorHost) {
    logger.warn(
      { emulatorHost: config.auth.firebase.emulatorHost },
      'FIREBASE AUTH EMULATOR MODE: unsigned ID tokens are accepted. Never use this with real data.',
    );
  }
  const pair = { cert: readFileSync(certFile), key: readFileSync(keyFile) };
  const app = await buildApp({
    core,
    authenticator: createAuthenticator(config, core.now),
    logger,
    tls: pair,
    bodyLimitBytes: server.bodyLimitBytes,
    trustProxy: server.trustProxy,
    publicUrl: `https://${server.publicHost}:${server.port}`,
  });
  await app.listen({ host: server.host, port: server.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : server.port;
  const watcher = watchCertificate({
    certFile,
    keyFile,
    onReload: (next) => {
      reloadServerCertificate(app.server, next);
      logger.info({ certFile }, 'TLS certificate reloaded');
    },
    onError: (err) => logger.error({ err: err.message, certFile }, 'TLS certificate not reloaded; keeping the current one'),
  });
  const redirect =
    server.httpPort === null
      ? null
      : await startRedirectListener({ host: server.host, port: server.httpPort, httpsPort: port, publicHost: server.publicHost });
  const jobs = startJobRunner(core, backgroundJobs(config), { log: (level, fields, message) => logger[level](fields, message) });
  return {
    app,
    jobs,
    url: `https://${server.publicHost}:${port}`,
    port,
    caCertFile,
    async close() {
      await jobs.stop();
      watcher.close();
      await redirect?.close();
      await app.close();
    },
  };
}
