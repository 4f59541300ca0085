// The real `strongroom` CLI as a child process: one-shot commands (`tenant create`, `audit verify`)
// and a long-running `serve` that tests can kill -9. Children never inherit STRONGROOM_* variables
// from the test process, only those the test passes.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';

/** dist/src/cli/main.js, next to the compiled tests. */
export const CLI_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('STRONGROOM_')) env[key] = value;
  }
  return { ...env, ...extra };
}

/** Environment that points the CLI at a PostgreSQL database instead of the data directory's SQLite file. */
export function postgresEnv(url: string): Record<string, string> {
  return {
    STRONGROOM_DATABASE__DRIVER: 'postgres',
    STRONGROOM_DATABASE__POSTGRES__URL: url,
    STRONGROOM_DATABASE__POSTGRES__SSL_MODE: 'disable',
  };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `strongroom --data-dir DIR ARGS…` to completion (killed after timeoutMs), with `input` on its standard input. */
export function runCli(dataDir: string, args: string[], options: { env?: Record<string, string>; timeoutMs?: number; input?: string } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI_MAIN, '--data-dir', dataDir, ...args],
      { env: childEnv(options.env), timeout: options.timeoutMs ?? 30_000, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const failure = error as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
        resolve({
          code: failure ? (typeof failure.code === 'number' ? failure.code : null) : 0,
          signal: failure?.signal ?? null,
          stdout,
          stderr,
        });
      },
    );
    child.stdin?.end(options.input ?? '');
  });
}

export interface CliProcess {
  /** Resolves with how the process ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything it wrote so far (progress lines go to stderr). */
  output(): { stdout: string; stderr: string };
  /** SIGKILL, then wait for the exit. */
  kill9(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `strongroom --data-dir DIR ARGS…` and returns at once, for a test that watches its output and kills it mid-way. */
export function spawnCli(dataDir: string, args: string[], options: { env?: Record<string, string> } = {}): CliProcess {
  const child = spawn(process.execPath, [CLI_MAIN, '--data-dir', dataDir, ...args], { env: childEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] });
  // Last resort if a test dies before it kills the child.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      process.removeListener('exit', killOnExit);
      resolve({ code, signal });
    }),
  );
  return {
    exited,
    output: () => ({ stdout, stderr }),
    async kill9() {
      child.kill('SIGKILL');
      return exited;
    },
  };
}

export interface ServerProcess {
  child: ChildProcess;
  /** `https://HOST:PORT`, from the `listening` line. */
  url: string;
  stdout: string[];
  stderr: string[];
  /** Resolves once the process has exited. */
  exited: Promise<void>;
  /** SIGKILL, then wait for the exit. */
  kill9(): Promise<void>;
  /** SIGTERM (graceful), SIGKILL after graceMs; waits for the exit. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts `strongroom --data-dir DIR serve --port 0` and waits for its `listening https://…` line. */
export async function spawnServer(dataDir: string, options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ServerProcess> {
  const child = spawn(process.execPath, [CLI_MAIN, '--data-dir', dataDir, 'serve', '--port', '0'], {
    env: childEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  let exitCode: number | null | undefined;
  // Last resort if a test dies before its cleanup: never leave a server running.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code) => {
      exitCode = code;
      process.removeListener('exit', killOnExit);
      resolve();
    });
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the server did not print "listening" within ${options.timeoutMs ?? 20_000} ms\n${stderr.join('')}`));
    }, options.timeoutMs ?? 20_000);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout.push(chunk);
      buffered += chunk;
      const match = /^listening (https:\/\/\S+)$/m.exec(buffered);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the server exited (code ${exitCode}) before listening\n${stderr.join('')}`));
    });
  });
  const alive = () => exitCode === undefined;
  return {
    child,
    url,
    stdout,
    stderr,
    exited,
    async kill9() {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
    async stop(graceMs = 10_000) {
      if (!alive()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A maker of temporary directories, all removed when the calling test file ends. */
export function tempDirs(prefix: string): () => string {
  const dirs: string[] = [];
  after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  return () => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
}
