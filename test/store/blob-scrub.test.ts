import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { IntegrityError } from '../../src/errors.js';
import { openFsBlobStore } from '../../src/store/blob/fs.js';
import { repairDelete, scrubObject } from '../../src/store/blob/scrub.js';
import { alteredOnWrite, bodyOf, flipFirstBit, takeDown, unreachableRoot } from '../support/blob-fixtures.js';
import { tempDirs } from '../support/cli-process.js';

const tempDir = tempDirs('strongroom-blob-scrub-');

/** Three real folders holding the same object, and the digest the file layer would have recorded for it. */
async function threeCopies() {
  const roots = [tempDir(), tempDir(), tempDir()];
  const backends = roots.map((root, index) => openFsBlobStore(root, `disk${index}`));
  const data = randomBytes(300_000);
  for (const backend of backends) await backend.put('t_a/x', bodyOf(data));
  const expected = { size: data.length, sha256: createHash('sha256').update(data).digest('hex') };
  const pathOn = (index: number) => join(roots[index]!, 't_a', 'x');
  return { roots, backends, data, expected, pathOn };
}

/** Flips one bit in the middle of a stored file, keeping its size: silent corruption on disk. */
function flipByte(path: string): void {
  const bytes = readFileSync(path);
  bytes[bytes.length >> 1]! ^= 0x01;
  writeFileSync(path, bytes);
}

const statuses = (result: { copies: { status: string; found?: string }[] }) => result.copies.map(({ status, found }) => (found ? `${status}:${found}` : status));

test('a scrub of healthy copies reports each ok and writes nothing', async () => {
  const { backends, expected, pathOn } = await threeCopies();
  // A put renames a new file into place: an unchanged inode means nothing was rewritten.
  const inodes = () => [0, 1, 2].map((index) => statSync(pathOn(index)).ino);
  const before = inodes();
  assert.deepEqual(statuses(await scrubObject(backends, 't_a/x', expected)), ['ok', 'ok', 'ok']);
  assert.deepEqual(inodes(), before);
});

test('a scrub rewrites a missing replica copy and a corrupted one from a healthy copy', async () => {
  const { backends, data, expected, pathOn } = await threeCopies();
  rmSync(pathOn(1));
  flipByte(pathOn(2));
  const result = await scrubObject(backends, 't_a/x', expected);
  assert.equal(result.key, 't_a/x');
  assert.deepEqual(statuses(result), ['ok', 'repaired:missing', 'repaired:corrupt']);
  assert.deepEqual(readFileSync(pathOn(1)), data);
  assert.deepEqual(readFileSync(pathOn(2)), data);
});

test("a corrupted primary copy is rewritten from a replica's", async () => {
  const { backends, data, expected, pathOn } = await threeCopies();
  flipByte(pathOn(0));
  rmSync(pathOn(1));
  assert.deepEqual(statuses(await scrubObject(backends, 't_a/x', expected)), ['repaired:corrupt', 'repaired:missing', 'ok']);
  assert.deepEqual(readFileSync(pathOn(0)), data);
});

test('with no healthy copy anywhere, every copy is unrecoverable and none is overwritten', async () => {
  const { backends, expected, pathOn } = await threeCopies();
  flipByte(pathOn(0));
  rmSync(pathOn(1));
  flipByte(pathOn(2));
  const before = [readFileSync(pathOn(0)), readFileSync(pathOn(2))];
  assert.deepEqual(statuses(await scrubObject(backends, 't_a/x', expected)), ['unrecoverable:corrupt', 'unrecoverable:missing', 'unrecoverable:corrupt']);
  assert.deepEqual([readFileSync(pathOn(0)), readFileSync(pathOn(2))], before);
  assert.throws(() => readFileSync(pathOn(1)), { code: 'ENOENT' });
});

test('a backend that is down is reported unavailable, not repaired, and the scrub still repairs the others', async () => {
  const { roots, backends, data, expected, pathOn } = await threeCopies();
  rmSync(pathOn(2));
  const bringUp = takeDown(roots[1]!);
  const result = await scrubObject(backends, 't_a/x', expected);
  bringUp();
  assert.deepEqual(statuses(result), ['ok', 'unavailable', 'repaired:missing']);
  assert.equal((result.copies[1]!.error as NodeJS.ErrnoException).code, 'ENOTDIR');
  assert.deepEqual(readFileSync(pathOn(2)), data);
});

test('a repair whose written copy does not verify leaves the copy unavailable with an integrity error', async () => {
  const { roots, backends, expected, pathOn } = await threeCopies();
  rmSync(pathOn(2));
  // A fake transport fault on the way to the third folder: every repair it takes arrives altered.
  const faulty = alteredOnWrite(openFsBlobStore(roots[2]!, 'disk2'), flipFirstBit);
  const result = await scrubObject([backends[0]!, backends[1]!, faulty], 't_a/x', expected);
  assert.deepEqual(statuses(result), ['ok', 'ok', 'unavailable:missing']);
  assert.ok(result.copies[2]!.error instanceof IntegrityError);
});

test('a backend whose folder cannot be made is reported unavailable, and the scrub does not throw', async () => {
  const { backends, expected } = await threeCopies();
  const unreachable = openFsBlobStore(unreachableRoot(tempDir()), 'unreachable');
  const result = await scrubObject([...backends, unreachable], 't_a/x', expected);
  assert.deepEqual(statuses(result), ['ok', 'ok', 'ok', 'unavailable']);
});

test('a queued delete removes the key from every backend and reports a backend that is still down', async () => {
  const { roots, backends } = await threeCopies();
  const bringUp = takeDown(roots[2]!);
  const result = await repairDelete(backends, 't_a/x');
  bringUp();
  assert.deepEqual(
    result.copies.map(({ backend, status }) => [backend, status]),
    [
      ['disk0', 'deleted'],
      ['disk1', 'deleted'],
      ['disk2', 'unavailable'],
    ],
  );
  assert.equal(await backends[0]!.head('t_a/x'), null);
  assert.equal(await backends[1]!.head('t_a/x'), null);
  assert.deepEqual((await repairDelete(backends, 't_a/x')).copies.map(({ status }) => status), ['deleted', 'deleted', 'deleted']);
  assert.equal(await backends[2]!.head('t_a/x'), null);
});
