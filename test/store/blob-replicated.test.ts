import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { ConfigError, IntegrityError, NotFoundError, UnavailableError } from '../../src/errors.js';
import type { BlobStore } from '../../src/store/blob/blob-store.js';
import { openFsBlobStore } from '../../src/store/blob/fs.js';
import { openReplicatedBlobStore, type ReplicaMiss, type ReplicatedOptions } from '../../src/store/blob/replicated.js';
import { alteredOnWrite, bodyOf, bytesOf, failingBody, flipFirstBit, takeDown, unreachableRoot } from '../support/blob-fixtures.js';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { tempDirs } from '../support/cli-process.js';

const tempDir = tempDirs('strongroom-blob-replicated-');

/** A replicated store over two real folders, recording the misses it reports. */
function replicatedPair(options: Partial<ReplicatedOptions> & { replica?: (root: string) => BlobStore } = {}) {
  const { replica: makeReplica, ...overrides } = options;
  const primaryRoot = tempDir();
  const replicaRoot = tempDir();
  const primary = openFsBlobStore(primaryRoot, 'primary');
  const replica = makeReplica?.(replicaRoot) ?? openFsBlobStore(replicaRoot, 'replica');
  const misses: ReplicaMiss[] = [];
  const store = openReplicatedBlobStore({
    primary,
    replicas: [replica],
    writePolicy: 'all',
    onReplicaMissed: async (miss) => {
      misses.push(miss);
    },
    ...overrides,
  });
  return { store, primary, replica, primaryRoot, replicaRoot, misses };
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const isUnavailable = (error: unknown) => error instanceof UnavailableError && error.code === 'unavailable';

test('every backend holds the same bytes, and put reports their size and SHA-256', async () => {
  const { store, primaryRoot, replicaRoot, misses } = replicatedPair();
  for (const size of [0, 3 * 1024 * 1024 + 5]) {
    const data = randomBytes(size);
    assert.deepEqual(await store.put(`t_a/o${size}`, bodyOf(data)), { size, sha256: sha256(data) });
    assert.deepEqual(readFileSync(join(primaryRoot, 't_a', `o${size}`)), data);
    assert.deepEqual(readFileSync(join(replicaRoot, 't_a', `o${size}`)), data);
    assert.deepEqual(await bytesOf(await store.get(`t_a/o${size}`)), data);
  }
  const listed: string[] = [];
  for await (const key of store.list('t_a/')) listed.push(key);
  assert.deepEqual(listed, ['t_a/o0', 't_a/o3145733']);
  assert.deepEqual(misses, []);
  assert.deepEqual(store.stats, { degradedWrites: 0, degradedDeletes: 0, fallbackReads: 0 });
});

test('a body that fails midway leaves no object and no temporary file on any backend', async () => {
  for (const writePolicy of ['all', 'primary'] as const) {
    const { store, primary, replica, primaryRoot, replicaRoot, misses } = replicatedPair({ writePolicy });
    await assert.rejects(store.put('t_a/broken', failingBody(randomBytes(300_000))), /the client went away/);
    assert.equal(await primary.head('t_a/broken'), null);
    assert.equal(await replica.head('t_a/broken'), null);
    assert.deepEqual(readdirSync(join(primaryRoot, 't_a')), []);
    assert.deepEqual(readdirSync(join(replicaRoot, 't_a')), []);
    assert.deepEqual(misses, []);
  }
});

test("under 'all', a replica that is down fails the put as unavailable and leaves nothing on the primary", async () => {
  const { store, primary, primaryRoot, misses } = replicatedPair({ replica: (root) => openFsBlobStore(unreachableRoot(root), 'replica') });
  await assert.rejects(store.put('t_a/x', bodyOf(randomBytes(200_000))), (error) => isUnavailable(error) && /replica/.test((error as Error).message));
  assert.equal(await primary.head('t_a/x'), null);
  assert.deepEqual(readdirSync(join(primaryRoot, 't_a')), []);
  assert.deepEqual(misses, []);
});

test("under 'all', a replica that fails after taking the whole body gets the primary's finished copy removed", async () => {
  // A fake: a backend that fails at commit time (say, an upload that is never acknowledged),
  // which a real folder cannot be made to do on demand.
  const failsAtCommit = (root: string): BlobStore => ({
    ...openFsBlobStore(root, 'replica'),
    async put(_key, body) {
      await finished(body.resume());
      throw new UnavailableError('the replica dropped the connection before acknowledging');
    },
  });
  const { store, primary } = replicatedPair({ replica: failsAtCommit });
  await assert.rejects(store.put('t_a/x', bodyOf(randomBytes(200_000))), isUnavailable);
  assert.equal(await primary.head('t_a/x'), null);
});

test("under 'primary', a replica that is down: the put succeeds, the miss is reported with its key, the degraded write is counted", async () => {
  const { store, primary, misses } = replicatedPair({ writePolicy: 'primary', replica: (root) => openFsBlobStore(unreachableRoot(root), 'replica') });
  const data = randomBytes(200_000);
  assert.deepEqual(await store.put('t_a/x', bodyOf(data)), { size: data.length, sha256: sha256(data) });
  assert.deepEqual(await bytesOf(await primary.get('t_a/x')), data);
  assert.equal(misses.length, 1);
  assert.deepEqual({ ...misses[0], error: undefined }, { key: 't_a/x', backend: 'replica', op: 'put', error: undefined });
  assert.equal((misses[0]!.error as NodeJS.ErrnoException).code, 'ENOTDIR');
  assert.equal(store.stats.degradedWrites, 1);
});

test('a put whose missed copy cannot be recorded fails and keeps no copy', async () => {
  const { store, primary } = replicatedPair({
    writePolicy: 'primary',
    replica: (root) => openFsBlobStore(unreachableRoot(root), 'replica'),
    onReplicaMissed: async () => {
      throw new Error('the repair queue is unavailable');
    },
  });
  await assert.rejects(store.put('t_a/x', bodyOf(randomBytes(1000))), /the repair queue is unavailable/);
  assert.equal(await primary.head('t_a/x'), null);
  assert.equal(store.stats.degradedWrites, 0);
});

test('a copy whose digest differs from the bytes sent is an integrity failure', async () => {
  // A fake transport fault: the replica's folder is real, one bit of the body is flipped on the way.
  const flipping = (root: string) => alteredOnWrite(openFsBlobStore(root, 'replica'), flipFirstBit);
  const strict = replicatedPair({ replica: flipping });
  await assert.rejects(strict.store.put('t_a/x', bodyOf(randomBytes(100_000))), IntegrityError);
  assert.equal(await strict.primary.head('t_a/x'), null);
  assert.equal(await strict.replica.head('t_a/x'), null);

  const lenient = replicatedPair({ writePolicy: 'primary', replica: flipping });
  await lenient.store.put('t_a/x', bodyOf(randomBytes(100_000)));
  assert.deepEqual(
    lenient.misses.map((miss) => [miss.backend, miss.error instanceof IntegrityError]),
    [['replica', true]],
  );
});

test('reads fall back to a replica when the primary lacks the copy or is down, and each fallback is counted', async () => {
  const { store, primaryRoot } = replicatedPair();
  const data = randomBytes(100_000);
  await store.put('t_a/x', bodyOf(data));
  rmSync(join(primaryRoot, 't_a', 'x'));
  assert.deepEqual(await bytesOf(await store.get('t_a/x')), data);
  assert.deepEqual(await bytesOf(await store.get('t_a/x', { start: 10, end: 19 })), data.subarray(10, 20));
  assert.deepEqual(await store.head('t_a/x'), { size: data.length });
  assert.equal(store.stats.fallbackReads, 3);
  await assert.rejects(store.get('t_a/missing'), NotFoundError);
  assert.equal(await store.head('t_a/missing'), null);

  const bringUp = takeDown(primaryRoot);
  assert.deepEqual(await bytesOf(await store.get('t_a/x')), data);
  // With the primary down, "not on the replica" does not mean "does not exist".
  await assert.rejects(store.get('t_a/missing'), isUnavailable);
  await assert.rejects(store.head('t_a/missing'), isUnavailable);
  bringUp();
  assert.equal(store.stats.fallbackReads, 4);
});

test('delete removes every copy; a replica that is down is reported as a missed delete; a primary that is down fails the delete', async () => {
  const { store, primary, replica, primaryRoot, replicaRoot, misses } = replicatedPair();
  await store.put('t_a/x', bodyOf(randomBytes(1000)));
  await store.delete('t_a/x');
  assert.equal(await primary.head('t_a/x'), null);
  assert.equal(await replica.head('t_a/x'), null);

  await store.put('t_a/y', bodyOf(randomBytes(1000)));
  const bringUpReplica = takeDown(replicaRoot);
  await store.delete('t_a/y');
  bringUpReplica();
  assert.equal(await primary.head('t_a/y'), null);
  assert.deepEqual(
    misses.map(({ key, backend, op }) => ({ key, backend, op })),
    [{ key: 't_a/y', backend: 'replica', op: 'delete' }],
  );
  assert.equal(store.stats.degradedDeletes, 1);

  const bringUpPrimary = takeDown(primaryRoot);
  await assert.rejects(store.delete('t_a/y'), isUnavailable);
  bringUpPrimary();
});

test('a replicated store needs a replica, and backends with distinct names', () => {
  const primary = openFsBlobStore(tempDir(), 'a');
  const onReplicaMissed = async () => {};
  assert.throws(() => openReplicatedBlobStore({ primary, replicas: [], writePolicy: 'all', onReplicaMissed }), ConfigError);
  assert.throws(() => openReplicatedBlobStore({ primary, replicas: [openFsBlobStore(tempDir(), 'a')], writePolicy: 'all', onReplicaMissed }), ConfigError);
});

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

/** Bytes in the files (finished or temporary) under a store's `t_a` folder. */
function bytesOnDisk(root: string): number {
  try {
    return readdirSync(join(root, 't_a')).reduce((sum, name) => sum + statSync(join(root, 't_a', name)).size, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}

test('a 64 MiB body streams at the pace of the slowest backend: it never runs far ahead of either disk, and memory stays flat', async () => {
  // The delay stands in for a slower disk or network on the replica's side.
  const { store, primaryRoot, replicaRoot } = replicatedPair({ replica: (root) => alteredOnWrite(openFsBlobStore(root, 'replica'), async (chunk, index) => (index % 4 === 0 ? sleep(1).then(() => chunk) : chunk)) });
  const chunkSize = 64 * 1024;
  const chunks = 1024;
  const hash = createHash('sha256');
  collectGarbage();
  const baseline = process.memoryUsage().arrayBuffers;
  let produced = 0;
  let peakAhead = 0;
  let peakGrowth = 0;
  const body = Readable.from(
    (function* () {
      for (let index = 0; index < chunks; index++) {
        peakAhead = Math.max(peakAhead, produced - Math.min(bytesOnDisk(primaryRoot), bytesOnDisk(replicaRoot)));
        // What is still held, not what awaits collection: that depends on when the GC last ran.
        if (index % 64 === 0) {
          collectGarbage();
          peakGrowth = Math.max(peakGrowth, process.memoryUsage().arrayBuffers - baseline);
        }
        const chunk = randomBytes(chunkSize);
        hash.update(chunk);
        produced += chunk.length;
        yield chunk;
      }
    })(),
  );
  const stored = await store.put('t_a/big', body);
  assert.deepEqual(stored, { size: chunkSize * chunks, sha256: hash.digest('hex') });
  assert.equal(statSync(join(replicaRoot, 't_a', 'big')).size, chunkSize * chunks);
  const MiB = 1024 * 1024;
  assert.ok(peakAhead < 32 * MiB, `the body ran ${Math.round(peakAhead / MiB)} MiB ahead of the slowest disk`);
  assert.ok(peakGrowth < 32 * MiB, `array buffers grew by ${Math.round(peakGrowth / MiB)} MiB`);
});
