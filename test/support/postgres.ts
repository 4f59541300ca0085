// A throwaway PostgreSQL cluster for tests: initdb into a fresh temporary folder,
// start on a free loopback port with password (SCRAM) authentication, stop and
// delete everything afterwards. Never touches a system cluster (port 5432).
//
//   const pg = await startPostgres();
//   after(() => pg.stop());
//   const url = await createDatabase(pg.connectionString, 'records_test');
//
// Binaries come from PATH or Debian's /usr/lib/postgresql/<version>/bin
// (`bash scripts/test-deps.sh` installs them). As root, initdb and pg_ctl run as
// the `postgres` user, because PostgreSQL refuses to run as root.

import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import pg from 'pg';

export interface PostgresCluster {
  /** `postgres://strongroom:<password>@127.0.0.1:<port>/postgres` (superuser). */
  connectionString: string;
  /** The cluster's data directory (PGDATA). */
  dataDir: string;
  /** The temporary folder holding dataDir, the server log and the socket; removed by stop(). */
  baseDir: string;
  port: number;
  /** Stops the server (immediate mode) and removes baseDir. Safe to call twice. */
  stop(): Promise<void>;
}

const SUPERUSER = 'strongroom';
const RUN_AS = 'postgres';
const START_ATTEMPTS = 3;

/** Starts a fresh cluster. Takes about a second. With `tls`, the server also speaks TLS with that certificate. */
export async function startPostgres(opts: { tls?: { certFile: string; keyFile: string } } = {}): Promise<PostgresCluster> {
  const binDir = findBinDir();
  const owner = isRoot() ? lookupUser(RUN_AS) : undefined;

  const baseDir = await mkdtemp(join(tmpdir(), 'strongroom-pg-'));
  const dataDir = join(baseDir, 'data');
  const logFile = join(baseDir, 'postgres.log');
  const pwFile = join(baseDir, 'pwfile');
  const password = randomBytes(24).toString('hex');
  const run = runner(binDir, baseDir, owner);

  let started = false;
  const cleanupOnExit = (): void => {
    // Last resort if a test forgets stop(): pg_ctl daemonizes the server, so
    // it would outlive this process. Synchronous: 'exit' handlers can't wait.
    if (started) run.sync('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '10']);
    rmSync(baseDir, { recursive: true, force: true });
  };
  process.once('exit', cleanupOnExit);

  try {
    if (owner) await chown(baseDir, owner.uid, owner.gid);
    await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
    if (owner) await chown(pwFile, owner.uid, owner.gid);
    try {
      await run('initdb', [
        '-D', dataDir,
        '--username', SUPERUSER,
        '--pwfile', pwFile,
        '-A', 'scram-sha-256',
        '-E', 'UTF8',
        '--no-locale',
        '--no-instructions',
      ]);
    } finally {
      await rm(pwFile, { force: true });
    }

    const tlsOptions: string[] = [];
    if (opts.tls) {
      // PostgreSQL insists its key is private to the server's user.
      for (const [from, name] of [[opts.tls.certFile, 'server.crt'], [opts.tls.keyFile, 'server.key']] as const) {
        await writeFile(join(dataDir, name), await readFile(from), { mode: 0o600 });
        if (owner) await chown(join(dataDir, name), owner.uid, owner.gid);
      }
      tlsOptions.push('-c ssl=on', '-c ssl_cert_file=server.crt', '-c ssl_key_file=server.key');
    }

    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freeLoopbackPort();
      const options = [
        '-c listen_addresses=127.0.0.1',
        `-c port=${port}`,
        `-c unix_socket_directories=${shellQuote(baseDir)}`,
        '-c fsync=on',
        '-c synchronous_commit=on',
        ...tlsOptions,
      ].join(' ');
      try {
        await run('pg_ctl', ['start', '-w', '-t', '30', '-D', dataDir, '-l', logFile, '-o', options]);
        started = true;
        break;
      } catch (error) {
        // Another process may have taken the port between our probe and the
        // server's bind: try another one, a few times.
        const log = await readFile(logFile, 'utf8').catch(() => '');
        if (attempt < START_ATTEMPTS && /could not (bind|create listen socket)/i.test(log)) continue;
        throw new Error(`${(error as Error).message}\n--- ${logFile} ---\n${log}`);
      }
    }

    const connectionString =
      `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        process.removeListener('exit', cleanupOnExit);
        try {
          await run('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '30']);
        } finally {
          started = false;
          await rm(baseDir, { recursive: true, force: true });
        }
      })();
      return stopping;
    };

    return { connectionString, dataDir, baseDir, port, stop };
  } catch (error) {
    process.removeListener('exit', cleanupOnExit);
    cleanupOnExit();
    throw error;
  }
}

/**
 * Creates a fresh, empty database in the cluster that `connectionString` points at,
 * and returns a connection string for it. Lets each test file use its own database
 * on one shared cluster.
 */
export async function createDatabase(connectionString: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) {
    throw new Error(`createDatabase: invalid database name ${JSON.stringify(name)} (use [a-z0-9_], at most 63)`);
  }
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8'`);
  } finally {
    await client.end();
  }
  const url = new URL(connectionString);
  url.pathname = `/${name}`;
  return url.toString();
}

// ---------------------------------------------------------------------------

interface Owner {
  uid: number;
  gid: number;
}

interface Runner {
  (program: string, args: string[]): Promise<void>;
  /** Synchronous and best-effort: never throws. */
  sync(program: string, args: string[]): void;
}

/** Runs a PostgreSQL program from binDir, as `owner` (through runuser) when given. */
function runner(binDir: string, cwd: string, owner: Owner | undefined): Runner {
  const env = childEnv();
  const command = (program: string, args: string[]): [string, string[]] => {
    const path = join(binDir, program);
    return owner ? ['runuser', ['-u', RUN_AS, '--', path, ...args]] : [path, args];
  };
  const run = (program: string, args: string[]): Promise<void> => {
    const [file, argv] = command(program, args);
    return new Promise((resolve, reject) => {
      execFile(file, argv, { cwd, env, timeout: 60_000 }, (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${program} failed: ${error.message}\n${stdout}${stderr}`.trimEnd()));
        } else {
          resolve();
        }
      });
    });
  };
  run.sync = (program: string, args: string[]): void => {
    const [file, argv] = command(program, args);
    try {
      execFileSync(file, argv, { cwd, env, stdio: 'ignore', timeout: 15_000 });
    } catch {
      // best effort
    }
  };
  return run;
}

/** The environment for PostgreSQL programs: ours without PG* variables, which could redirect them. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG')) env[key] = value;
  }
  env.LC_ALL = 'C';
  return env;
}

/** The folder holding initdb, pg_ctl and postgres: from PATH, else the highest Debian version. */
function findBinDir(): string {
  const hasAll = (dir: string): boolean =>
    ['initdb', 'pg_ctl', 'postgres'].every((program) => existsSync(join(dir, program)));

  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir || !existsSync(join(dir, 'initdb'))) continue;
    // PATH entries are often symlinks (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb):
    // use the folder the real initdb lives in, where its pg_ctl and postgres are.
    const realDir = dirname(realpathSync(join(dir, 'initdb')));
    if (hasAll(realDir)) return realDir;
    if (hasAll(dir)) return dir;
  }

  const debianRoot = '/usr/lib/postgresql';
  const versions = existsSync(debianRoot)
    ? readdirSync(debianRoot)
        .filter((name) => /^\d+(\.\d+)?$/.test(name) && hasAll(join(debianRoot, name, 'bin')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0] !== undefined) return join(debianRoot, versions[0], 'bin');

  throw new Error(
    'PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in ' +
      '/usr/lib/postgresql/*/bin: run `bash scripts/test-deps.sh` (installs Debian\'s postgresql).',
  );
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function lookupUser(name: string): Owner {
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error(
      `running as root, PostgreSQL must run as the '${name}' user, which does not exist: ` +
        'run `bash scripts/test-deps.sh` (Debian\'s postgresql package creates it).',
    );
  }
}

/** A free TCP port on 127.0.0.1, as the kernel hands out for port 0. */
function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('could not read the port'))));
    });
  });
}

/** Quotes a value for the shell command line that pg_ctl builds from -o. */
function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}
