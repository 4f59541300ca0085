// The real Firebase Auth emulator (firebase-tools, pinned in test/tools/firebase and
// installed by `bash scripts/test-deps.sh`), alone, on a free loopback port, for tests
// that sign users in through it and call Strongroom with the ID tokens it issues.
//
//   const emu = await startFirebaseEmulator({ projectId: 'demo-strongroom' });
//   after(() => emu.stop());
//   const { localId } = await emu.signUp('alice@example.com', 'password1');
//   await emu.verifyEmail(localId);
//   const { idToken } = await emu.signIn('alice@example.com', 'password1');
//
// It needs no network: the project is a `demo-…` one (no credentials, no Google
// APIs), and the CLI's update check, message of the day and usage reporting are
// off. Starting takes ~10 s, nearly all of it the emulator compiling its API schema.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, realpathSync, rmSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface FirebaseEmulator {
  /** `127.0.0.1:<port>`, what `auth.firebase.emulatorHost` expects. */
  host: string;
  projectId: string;
  /** Creates an e-mail/password user; its e-mail is not verified. */
  signUp(email: string, password: string): Promise<{ localId: string; idToken: string }>;
  /** Marks the user's e-mail verified (admin API); tokens issued after this carry `email_verified: true`. */
  verifyEmail(localId: string): Promise<void>;
  /** An admin update of the account (the Admin SDK's updateUser): e.g. `{ disableUser: true }` or `{ validSince }`. */
  updateAccount(localId: string, fields: Record<string, unknown>): Promise<void>;
  deleteAccount(localId: string): Promise<void>;
  /** Password sign-in, for users without a second factor. */
  signIn(email: string, password: string): Promise<{ idToken: string }>;
  /** Enrols an SMS second factor (admin API); from then on signIn() fails and signInWithMfa() is needed. */
  enrollPhoneSecondFactor(localId: string, phoneNumber: string): Promise<void>;
  /** Password then SMS code (read from the emulator): a token with `firebase.sign_in_second_factor: 'phone'`. */
  signInWithMfa(email: string, password: string): Promise<{ idToken: string }>;
  /** Stops the emulator and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;
const START_ATTEMPTS = 3;
const STOP_GRACE_MS = 3_000;
/** The emulator checks that a key is present, not which. */
const API_KEY = 'fake-api-key';

/** Starts the Auth emulator (and the hub the CLI always runs) for `projectId`, which must start with `demo-`. */
export async function startFirebaseEmulator({ projectId }: { projectId: string }): Promise<FirebaseEmulator> {
  // A real project id would make the CLI look for credentials and reach Google.
  if (!/^demo-[a-z0-9-]{1,25}$/.test(projectId)) throw new Error(`not a demo project id: ${projectId}`);
  const cli = firebaseCli();
  const baseDir = await mkdtemp(join(tmpdir(), 'strongroom-firebase-'));
  let child: ChildProcess | undefined;
  const cleanupOnExit = (): void => {
    // Last resort if a test forgets stop(): the emulator runs in its own process group.
    if (child?.pid && child.exitCode === null && child.signalCode === null) killGroup(child.pid, 'SIGKILL');
    rmSync(baseDir, { recursive: true, force: true });
  };
  process.once('exit', cleanupOnExit);

  try {
    let host = '';
    for (let attempt = 1; ; attempt++) {
      const [authPort, hubPort, loggingPort] = (await freeLoopbackPorts(3)) as [number, number, number];
      host = `127.0.0.1:${authPort}`;
      await writeFile(join(baseDir, 'firebase.json'), JSON.stringify(emulatorConfig(authPort, hubPort, loggingPort)));
      const started = spawnEmulator(cli, baseDir, projectId, hubPort);
      child = started.child;
      try {
        await waitUntilReady(host, started);
        break;
      } catch (error) {
        await stopProcess(started.child);
        // Another process may have taken a port between our probe and the emulator's bind.
        if (attempt < START_ATTEMPTS && /port \d+ is not open|EADDRINUSE/i.test(started.output())) continue;
        throw error;
      }
    }

    const api = emulatorApi(host, projectId);
    let stopping: Promise<void> | undefined;
    const running = child;
    return {
      host,
      projectId,
      ...api,
      stop() {
        stopping ??= (async () => {
          process.removeListener('exit', cleanupOnExit);
          try {
            await stopProcess(running);
          } finally {
            rmSync(baseDir, { recursive: true, force: true });
          }
        })();
        return stopping;
      },
    };
  } catch (error) {
    process.removeListener('exit', cleanupOnExit);
    cleanupOnExit();
    throw error;
  }
}

type Api = Omit<FirebaseEmulator, 'host' | 'projectId' | 'stop'>;

function emulatorApi(host: string, projectId: string): Api {
  const v1 = `http://${host}/identitytoolkit.googleapis.com/v1`;
  const v2 = `http://${host}/identitytoolkit.googleapis.com/v2`;
  // The emulator's admin API takes this fixed bearer as "a service account of the project".
  const admin = { authorization: 'Bearer owner' };

  const passwordSignIn = (email: string, password: string) =>
    post(`${v1}/accounts:signInWithPassword?key=${API_KEY}`, { email, password, returnSecureToken: true });

  return {
    async signUp(email, password) {
      const res = await post(`${v1}/accounts:signUp?key=${API_KEY}`, { email, password, returnSecureToken: true });
      return { localId: stringField(res, 'localId'), idToken: stringField(res, 'idToken') };
    },
    async verifyEmail(localId) {
      await this.updateAccount(localId, { emailVerified: true });
    },
    async updateAccount(localId, fields) {
      await post(`${v1}/projects/${projectId}/accounts:update`, { localId, ...fields }, admin);
    },
    async deleteAccount(localId) {
      await post(`${v1}/projects/${projectId}/accounts:delete`, { localId }, admin);
    },
    async signIn(email, password) {
      const res = await passwordSignIn(email, password);
      if ('mfaPendingCredential' in res) throw new Error(`${email} has a second factor: use signInWithMfa`);
      return { idToken: stringField(res, 'idToken') };
    },
    async enrollPhoneSecondFactor(localId, phoneNumber) {
      const enrollment = { phoneInfo: phoneNumber, mfaEnrollmentId: `phone-${phoneNumber.replace(/\D/g, '')}`, displayName: 'phone' };
      await post(`${v1}/projects/${projectId}/accounts:update`, { localId, mfa: { enrollments: [enrollment] } }, admin);
    },
    async signInWithMfa(email, password) {
      const first = await passwordSignIn(email, password);
      const mfaPendingCredential = stringField(first, 'mfaPendingCredential');
      const factors = first.mfaInfo as { mfaEnrollmentId?: unknown }[] | undefined;
      const mfaEnrollmentId = factors?.[0]?.mfaEnrollmentId;
      if (typeof mfaEnrollmentId !== 'string') throw new Error(`${email} has no second factor enrolled`);
      const started = await post(`${v2}/accounts/mfaSignIn:start?key=${API_KEY}`, { mfaPendingCredential, mfaEnrollmentId });
      const sessionInfo = stringField(started.phoneResponseInfo ?? {}, 'sessionInfo');
      // The emulator sends no SMS; it lists the codes it would have sent.
      const listed = await send('GET', `http://${host}/emulator/v1/projects/${projectId}/verificationCodes`);
      const codes = (listed.verificationCodes ?? []) as { sessionInfo?: string; code?: string }[];
      const code = codes.find((c) => c.sessionInfo === sessionInfo)?.code;
      if (!code) throw new Error('the emulator listed no verification code for this sign-in');
      const done = await post(`${v2}/accounts/mfaSignIn:finalize?key=${API_KEY}`, {
        mfaPendingCredential,
        phoneVerificationInfo: { sessionInfo, code },
      });
      return { idToken: stringField(done, 'idToken') };
    },
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Json> {
  return send('POST', url, body, headers);
}

async function send(method: 'GET' | 'POST', url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Json> {
  const res = await fetch(url, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  // The path only: query strings carry no secret here, but bodies carry passwords and tokens.
  if (!res.ok) throw new Error(`Auth emulator ${method} ${new URL(url).pathname}: ${res.status} ${text.slice(0, 500)}`);
  return JSON.parse(text) as Json;
}

function stringField(value: Json, name: string): string {
  const field = value[name];
  if (typeof field !== 'string' || field === '') throw new Error(`Auth emulator response without ${name}`);
  return field;
}

/**
 * Only the Auth emulator, on 127.0.0.1, and no UI. The hub and the logging emulator, which the
 * CLI starts all the same, get free ports of ours rather than probing upwards from 4400 and 4500.
 */
function emulatorConfig(authPort: number, hubPort: number, loggingPort: number): unknown {
  return {
    emulators: {
      auth: { host: '127.0.0.1', port: authPort },
      hub: { host: '127.0.0.1', port: hubPort },
      logging: { host: '127.0.0.1', port: loggingPort },
      ui: { enabled: false },
    },
  };
}

interface StartedProcess {
  child: ChildProcess;
  /** Everything the emulator printed so far (stdout and stderr). */
  output(): string;
  /** Set once the process has exited. */
  exited(): string | null;
}

function spawnEmulator(cli: string, baseDir: string, projectId: string, hubPort: number): StartedProcess {
  const env: NodeJS.ProcessEnv = {
    // Not our environment: no credentials (GOOGLE_APPLICATION_CREDENTIALS, FIREBASE_TOKEN) or proxies reach the CLI.
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: 'C.UTF-8',
    // Its configstore (usage consent, update checks) and hub locator file go to the throwaway folder.
    HOME: baseDir,
    XDG_CONFIG_HOME: join(baseDir, '.config'),
    TMPDIR: baseDir,
    // CI: no message-of-the-day fetch, no update check; NO_UPDATE_NOTIFIER says the latter twice.
    CI: 'true',
    NO_UPDATE_NOTIFIER: '1',
    // It posts "emulators started" to a local IDE extension, by default on localhost:40001, a port any
    // test server may have been given: send it to the emulator's own hub instead, which ignores it.
    VSCODE_WEBHOOK_PORT: String(hubPort),
  };
  // Our node, not the one on PATH: tests run on Node 20 and 24.
  const child = spawn(process.execPath, [cli, 'emulators:start', '--only', 'auth', '--project', projectId], {
    cwd: baseDir,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let exited: string | null = null;
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.on('error', (error) => {
    exited = `could not start: ${error.message}`;
  });
  child.on('exit', (code, signal) => {
    exited = `exited with ${signal ?? `code ${code}`}`;
  });
  return { child, output: () => output, exited: () => exited };
}

async function waitUntilReady(host: string, started: StartedProcess): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const exited = started.exited();
    if (exited) throw new Error(`the Firebase Auth emulator ${exited} before it was ready:\n${started.output()}`);
    try {
      const res = await fetch(`http://${host}/`, { signal: AbortSignal.timeout(2_000) });
      const body = (await res.json()) as { authEmulator?: { ready?: boolean } };
      if (body.authEmulator?.ready === true) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      throw new Error(`the Firebase Auth emulator was not ready after ${START_TIMEOUT_MS / 1000} s:\n${started.output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** SIGTERM to the whole process group, SIGKILL if it is still there after a grace period. */
async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  killGroup(child.pid, 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), STOP_GRACE_MS);
  });
  if ((await Promise.race([exited, graceOver])) === 'timeout') {
    killGroup(child.pid, 'SIGKILL');
    await exited;
  }
  clearTimeout(timer);
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/** firebase-tools' CLI script, from test/tools/firebase beside this repository's test folder. */
function firebaseCli(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const bin = join(dir, 'test', 'tools', 'firebase', 'node_modules', '.bin', 'firebase');
    if (existsSync(bin)) return realpathSync(bin);
    if (dirname(dir) === dir) break;
  }
  throw new Error('firebase-tools is not installed in test/tools/firebase: run `bash scripts/test-deps.sh`');
}

/** `count` distinct free TCP ports on 127.0.0.1, as the kernel hands out for port 0 (all held at once, so distinct). */
async function freeLoopbackPorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.once('error', reject);
            server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
          }),
      ),
    );
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}
