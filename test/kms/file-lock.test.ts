// The lock that keeps processes sharing the local KMS's key store from interleaving their writes:
// a lock left by a killed process is taken over at once, one held by a live process is respected.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { withFileLock } from '../../src/kms/file-lock.js';
import { UnavailableError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'strongroom-lock-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a lock whose holder was killed (its pid no longer runs) is taken over at once, and released after', async () => {
  const gone = spawnSync(process.execPath, ['-e', 'process.kill(process.pid, "SIGKILL")']);
  assert.equal(gone.signal, 'SIGKILL');
  const lock = join(dir, 'dead.lock');
  writeFileSync(lock, `${gone.pid} left-by-a-killed-process`);
  const started = Date.now();
  assert.equal(await withFileLock(lock, async () => 'ran'), 'ran');
  assert.ok(Date.now() - started < 2_000, 'without waiting for the lock to age');
  assert.equal(existsSync(lock), false);
});

test('a lock held by a live process is waited for, and refused after the wait', { timeout: 20_000 }, async () => {
  const lock = join(dir, 'live.lock');
  // The test runner's parent runs as long as this test does.
  writeFileSync(lock, `${process.ppid} held`);
  await assert.rejects(withFileLock(lock, async () => 'ran'), (error: Error) => error instanceof UnavailableError && /still held/.test(error.message));
  assert.equal(existsSync(lock), true, 'the holder keeps its lock');
});
