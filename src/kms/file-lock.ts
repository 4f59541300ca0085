import { randomUUID } from 'node:crypto';
import { open, readFile, stat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { UnavailableError } from '../errors.js';

const WAIT_MS = 5_000;
/**
 * A lock older than this was left by a crashed process: writes under it take milliseconds. One whose
 * holder (the pid in its token) no longer runs on this machine is stale at once.
 */
const STALE_MS = 30_000;

/**
 * Runs `critical` holding `lockFile`, an O_EXCL-created file, so that processes sharing a file (the
 * CLI while the server runs) never interleave their read-modify-write cycles.
 */
export async function withFileLock<T>(lockFile: string, critical: () => Promise<T>): Promise<T> {
  const token = await acquire(lockFile);
  try {
    return await critical();
  } finally {
    await release(lockFile, token);
  }
}

async function acquire(lockFile: string): Promise<string> {
  const token = `${process.pid} ${randomUUID()}`;
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    try {
      const handle = await open(lockFile, 'wx', 0o600);
      try {
        await handle.writeFile(token);
      } finally {
        await handle.close();
      }
      return token;
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') {
        throw error;
      }
    }
    await removeIfStale(lockFile);
    if (Date.now() >= deadline) {
      throw new UnavailableError(
        `${lockFile} is still held after ${WAIT_MS / 1000} s; if no strongroom process is running, remove it`,
      );
    }
    // Jitter keeps two waiting processes from retrying in lockstep.
    await sleep(10 + Math.floor(Math.random() * 40));
  }
}

/** Whether the process named in a lock's token is gone (killed, say): its lock is stale at once. */
async function holderGone(lockFile: string): Promise<boolean> {
  const pid = Number((await readFile(lockFile, 'utf8')).split(' ')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return errorCode(error) === 'ESRCH';
  }
}

async function removeIfStale(lockFile: string): Promise<void> {
  try {
    const seen = await stat(lockFile);
    if (Date.now() - seen.mtimeMs < STALE_MS && !(await holderGone(lockFile))) {
      return;
    }
    // Only the very file judged stale goes: another process may have replaced it in the meantime.
    const again = await stat(lockFile);
    if (again.ino === seen.ino && again.mtimeMs === seen.mtimeMs) {
      await unlink(lockFile);
    }
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') {
      throw error;
    }
  }
}

async function release(lockFile: string, token: string): Promise<void> {
  try {
    // If we were judged stale and another process took over, the lock is theirs: leave it.
    if ((await readFile(lockFile, 'utf8')) === token) {
      await unlink(lockFile);
    }
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') {
      throw error;
    }
  }
}

export function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}
