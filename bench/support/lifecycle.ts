import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

/* How a benchmark process begins and ends: its flags, its temporary data, its exit code. */

/**
 * A temporary directory for a benchmark's data, removed on every way out (normal end, error,
 * SIGINT/SIGTERM/SIGHUP), after `beforeRemove` has stopped whatever writes in it (loads, servers).
 */
export function temporaryDataDir(prefix: string, beforeRemove: () => void): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(os.tmpdir(), prefix));
  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    beforeRemove();
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\ninterrupted by ${signal}; stopping servers and removing ${dir}\n`);
      cleanup();
      process.exit(130);
    });
  }
  return { dir, cleanup };
}

/** The flags `parse` reads from the command line; on a wrong one, its message and the usage on stderr, and exit 2. */
export function flagsOrUsage<T>(parse: () => T, usage: string): T {
  try {
    return parse();
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n${usage}\n`);
    process.exit(2);
  }
}

/** Runs a benchmark to its exit code (1, with the stack, when it throws), cleaning up either way. */
export function runBenchmark(main: () => Promise<number>, cleanup: () => void): void {
  main().then(
    (code) => {
      cleanup();
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`\nbenchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      cleanup();
      process.exitCode = 1;
    },
  );
}

/** A command-line value that must be a positive integer; throws naming the flag otherwise. */
export function positiveInt(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got "${raw}"`);
  return n;
}
