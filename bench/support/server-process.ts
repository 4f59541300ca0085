import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

/**
 * A server the benchmark runs as a child process. Its stderr (pino's request log for the secure
 * server) goes straight to a file, so the benchmark process spends no CPU relaying it.
 */
export interface ServerProcess {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  readonly logFile: string;
  /** Peak resident set size (VmHWM) so far, in bytes; null where /proc is not available. */
  peakRssBytes(): number | null;
  /** CPU time (user + system, all threads) used so far, in seconds; null where /proc is not available. */
  cpuSeconds(): number | null;
  /** SIGINT, then waits for the exit; SIGKILL after `graceMs`. Resolves to how it ended. */
  stop(graceMs?: number): Promise<string>;
}

const LISTENING = /^listening https:\/\/(?:\[[^\]]+\]|[^\s:/]+):(\d+)$/;
const START_TIMEOUT_MS = 60_000;
/** USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux build that matters here. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Every child still running; killed on any exit of the benchmark, normal or not. */
const running = new Set<ChildProcess>();

export function killAllServers(): void {
  for (const child of running) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  running.clear();
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `killed by ${signal}` : `exit code ${code}`;
}

/** Starts `node <args>` and waits for its `listening https://HOST:PORT` line. */
export async function startServerProcess(name: string, args: string[], logFile: string): Promise<ServerProcess> {
  const logFd = openSync(logFile, 'a', 0o600);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', logFd] });
  closeSync(logFd);
  running.add(child);
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve(describeExit(code, signal));
    });
  });

  const port = await new Promise<number>((resolve, reject) => {
    let settled = false;
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => fail(new Error(`${name} did not print "listening https://…" within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${error.message}\n--- last lines of ${logFile} ---\n${tail(logFile)}`));
    };
    lines.on('line', (line) => {
      const match = LISTENING.exec(line.trim());
      if (!match || settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(Number(match[1]));
    });
    child.once('error', (error) => fail(error));
    void exited.then((how) => fail(new Error(`${name} ended before listening (${how})`)));
  });
  // Keep draining stdout so the child never blocks on a full pipe.
  child.stdout!.resume();

  return {
    name,
    pid: child.pid!,
    port,
    logFile,
    peakRssBytes() {
      try {
        const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        return match ? Number(match[1]) * 1024 : null;
      } catch {
        return null;
      }
    },
    cpuSeconds() {
      try {
        // Fields after the parenthesised command name: state is 3rd, utime 14th, stime 15th.
        const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
      } catch {
        return null;
      }
    },
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const how = await exited;
      clearTimeout(timer);
      return how;
    },
  };
}
