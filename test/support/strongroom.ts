import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import type { Core } from '../../src/core/context.js';
import { openCore } from '../../src/core/open-core.js';
import { createTenant } from '../../src/core/tenants.js';
import { createLogger } from '../../src/log.js';
import { startServer, type RunningServer } from '../../src/http/server.js';
import { prepareDataDir } from '../../src/cli/runtime.js';
import { databaseFiles, filesUnder, scanFiles } from './disk-scan.js';
import { createSoftHsmToken, type SoftHsmToken } from './softhsm.js';
import { createDatabase, startPostgres, type PostgresCluster } from './postgres.js';

export type Driver = 'sqlite' | 'postgres';

/** The parts of `sr_<key id>_<secret>`; the base64url secret may itself contain `_`. */
export function apiKeyParts(apiKey: string): { keyId: string; secret: string } {
  const match = /^sr_([a-z2-7]{16})_([A-Za-z0-9_-]{43})$/.exec(apiKey);
  if (!match) throw new Error(`not an API key of the form sr_<key id>_<secret>`);
  return { keyId: match[1]!, secret: match[2]! };
}
export const DRIVERS: Driver[] = ['sqlite', 'postgres'];

let cluster: Promise<PostgresCluster> | undefined;
let databases = 0;

/** One throwaway PostgreSQL cluster per test file, a fresh database per harness. */
export async function freshPostgresUrl(): Promise<string> {
  cluster ??= startPostgres();
  const c = await cluster;
  databases += 1;
  return createDatabase(c.connectionString, `strongroom_${process.pid}_${databases}`);
}

export async function stopPostgres(): Promise<void> {
  if (cluster) await (await cluster).stop();
  cluster = undefined;
}

export async function postgresDataDir(): Promise<string> {
  if (!cluster) throw new Error('no PostgreSQL cluster is running');
  return (await cluster).dataDir;
}

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
  /** The body as received, for binary downloads. */
  bytes: Buffer;
}

/** Reads a whole response; `json` is undefined when the body is not JSON. */
export async function readResponse(res: Dispatcher.ResponseData): Promise<Response> {
  const bytes = Buffer.from(await res.body.arrayBuffer());
  const text = bytes.toString('utf8');
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, text, json, bytes };
}

export interface CallOptions {
  key?: string;
  body?: unknown;
  rawBody?: string | Buffer;
  headers?: Record<string, string>;
}

/** Every log line the server wrote, for tests that look for leaked secrets. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    done();
  }
}

export interface Harness {
  driver: Driver;
  config: Config;
  core: Core & { close(): Promise<void> };
  server: RunningServer;
  url: string;
  ca: Buffer;
  logs: LogCapture;
  /** The SoftHSM2 token when the harness runs the pkcs11 provider. */
  kmsToken: SoftHsmToken | null;
  call(method: string, path: string, options?: CallOptions): Promise<Response>;
  tenant(name?: string): Promise<{ tenantId: string; apiKey: string }>;
  close(): Promise<void>;
}

/** Where the harness keeps its keys: the embedded local KMS, or a throwaway SoftHSM2 token. */
export type KmsChoice = 'local' | 'pkcs11';

/** The setups the record suite runs on: each database, and the PKCS#11 provider. */
export const SETUPS: { driver: Driver; kms: KmsChoice }[] = [
  { driver: 'sqlite', kms: 'local' },
  { driver: 'postgres', kms: 'local' },
  { driver: 'sqlite', kms: 'pkcs11' },
];

export async function startHarness(driver: Driver, extra: { now?: () => number; env?: Record<string, string>; kms?: KmsChoice } = {}): Promise<Harness> {
  const dataDir = mkdtempSync(join(tmpdir(), 'strongroom-test-'));
  const env: Record<string, string> = {
    STRONGROOM_SERVER__PORT: '0',
    STRONGROOM_LOG__LEVEL: 'info',
    // Every test request comes from 127.0.0.1; the failure limit has its own test.
    STRONGROOM_AUTH__FAILURE_LIMIT__MAX_FAILURES: '10000',
    // Restore drills have their own tests; elsewhere a test that moves the clock by days would start them.
    STRONGROOM_RECOVERY__DRILL_FULL_HOURS: '0',
    STRONGROOM_RECOVERY__DRILL_TENANT_HOURS: '0',
    ...extra.env,
  };
  if (driver === 'postgres') {
    env.STRONGROOM_DATABASE__DRIVER = 'postgres';
    env.STRONGROOM_DATABASE__POSTGRES__URL = await freshPostgresUrl();
    env.STRONGROOM_DATABASE__POSTGRES__SSL_MODE = 'disable';
  }
  const token = extra.kms === 'pkcs11' ? await createSoftHsmToken() : null;
  if (token) {
    Object.assign(env, { STRONGROOM_KMS__PROVIDER: 'pkcs11', STRONGROOM_KMS__PKCS11__LIBRARY: token.library, STRONGROOM_KMS__PKCS11__TOKEN_LABEL: token.tokenLabel, STRONGROOM_KMS__PKCS11__PIN: token.pin });
  }
  const config = loadConfig({ env, overrides: { dataDir } });
  await prepareDataDir(config);
  const logs = new LogCapture();
  // The test's clock stands for the database's too, so tests can move past deadlines such as a purge date.
  const core = await openCore(config, extra.now, extra.now ? async () => extra.now!() : undefined);
  const server = await startServer(config, core, createLogger(config.log.level, logs));
  const ca = readFileSync(server.caCertFile!);
  const agent = new Agent({ connect: { ca, servername: 'localhost' } });
  const base = `https://localhost:${server.port}`;
  const credentials = new Set<string>();
  const startedAt = Date.now();
  const harness: Harness = {
    driver,
    config,
    core,
    server,
    url: base,
    ca,
    logs,
    kmsToken: token,
    async call(method, path, options = {}) {
      const headers: Record<string, string> = { ...options.headers };
      if (options.key) headers.authorization = `Bearer ${options.key}`;
      const bearer = /^Bearer (.+)$/.exec(headers.authorization ?? '')?.[1];
      if (bearer) credentials.add(bearer);
      let body: string | Buffer | undefined = options.rawBody;
      if (options.body !== undefined) {
        body = JSON.stringify(options.body);
        headers['content-type'] ??= 'application/json';
      }
      return readResponse(await request(`${base}${path}`, { method: method as 'GET', headers, body, dispatcher: agent }));
    },
    async tenant(name = 'acme') {
      const created = await createTenant(core, { kind: 'system', name: 'test' }, { requestId: 'test', sourceIp: 'local' }, name);
      return { tenantId: created.tenantId, apiKey: created.apiKey };
    },
    async close() {
      await server.close();
      await agent.close();
      try {
        await assertNoCredentialKept(harness, credentials, startedAt);
      } finally {
        await core.close();
        await token?.remove();
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
  return harness;
}

/**
 * What makes a presented credential usable, as the needle to look for: an API key's secret, an ID
 * token's signature, or the claims of an unsigned (emulator) token. Short guesses are skipped.
 */
function usablePart(credential: string): string | null {
  if (credential.startsWith('sr_')) return credential.slice(20) || null;
  const [, payload = '', signature = ''] = credential.split('.');
  const part = signature || payload;
  return part.length >= 20 ? part : null;
}

/**
 * Every harness, when closed, proves it kept none of the credentials its requests presented: not
 * in a log line, not in the database (PostgreSQL: the files written since it started), not in the
 * data directory. So the whole suite is scanned, test by test.
 */
async function assertNoCredentialKept(h: Harness, credentials: Set<string>, since: number): Promise<void> {
  const needles = [...credentials].map(usablePart).filter((part): part is string => part !== null);
  if (needles.length === 0) return;
  const inLogs = needles.filter((needle) => h.logs.lines.some((line) => line.includes(needle)));
  const files = [...(await databaseFiles(h)), ...filesUnder(h.config.dataDir)].filter((file) => {
    try {
      return statSync(file).mtimeMs >= since - 1000;
    } catch {
      return false;
    }
  });
  const atRest = scanFiles(files, needles).found;
  if (inLogs.length > 0 || atRest.size > 0) {
    const show = (needle: string) => `${needle.slice(0, 8)}…`;
    throw new Error(`credentials kept: ${inLogs.length} in log lines (${inLogs.map(show).join(', ')}); at rest: ${[...atRest].map(([n, f]) => `${show(n)} in ${f.join(', ')}`).join('; ')}`);
  }
}
