import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { BadRequestError, NotFoundError } from '../../src/errors.js';
import { openFsBlobStore } from '../../src/store/blob/fs.js';
import { bodyOf, bytesOf, failingBody } from '../support/blob-fixtures.js';
import { tempDirs } from '../support/cli-process.js';

const tempDir = tempDirs('strongroom-blob-fs-');

test('objects round-trip with their size and SHA-256, read whole or by range; files are private', async () => {
  const root = tempDir();
  const store = openFsBlobStore(root);
  for (const size of [0, 1, 3 * 1024 * 1024 + 5]) {
    const data = randomBytes(size);
    const stored = await store.put(`t_a/o${size}`, bodyOf(data));
    assert.deepEqual(stored, { size, sha256: createHash('sha256').update(data).digest('hex') });
    assert.deepEqual(await bytesOf(await store.get(`t_a/o${size}`)), data);
    assert.deepEqual(await store.head(`t_a/o${size}`), { size });
  }
  const data = randomBytes(200_000);
  await store.put('t_a/ranged', bodyOf(data));
  assert.deepEqual(await bytesOf(await store.get('t_a/ranged', { start: 65_536, end: 131_071 })), data.subarray(65_536, 131_072));
  assert.equal(statSync(join(root, 't_a', 'ranged')).mode & 0o777, 0o600);
  assert.equal(statSync(join(root, 't_a')).mode & 0o777, 0o700);
});

test('an overwrite replaces the whole object; delete is idempotent; missing objects are NotFound or null', async () => {
  const store = openFsBlobStore(tempDir());
  await store.put('t_a/x', bodyOf(Buffer.from('first version, longer')));
  await store.put('t_a/x', bodyOf(Buffer.from('second')));
  assert.equal((await bytesOf(await store.get('t_a/x'))).toString(), 'second');
  await store.delete('t_a/x');
  await store.delete('t_a/x');
  assert.equal(await store.head('t_a/x'), null);
  await assert.rejects(store.get('t_a/x'), NotFoundError);
});

test('a body that fails midway leaves neither an object nor a temporary file', async () => {
  const root = tempDir();
  const store = openFsBlobStore(root);
  await assert.rejects(store.put('t_a/broken', failingBody(randomBytes(100_000))), /the client went away/);
  assert.equal(await store.head('t_a/broken'), null);
  assert.deepEqual(readdirSync(join(root, 't_a')), []);
});

test('list gives the keys under a prefix in order, never temporary files; keys and prefixes cannot leave the root', async () => {
  const store = openFsBlobStore(tempDir());
  for (const key of ['t_b/2', 't_a/2', 't_a/10', 't_a/sub/1', 't_c/1']) await store.put(key, bodyOf(Buffer.from(key)));
  const listed: string[] = [];
  for await (const key of store.list('t_a/')) listed.push(key);
  assert.deepEqual(listed, ['t_a/10', 't_a/2', 't_a/sub/1']);
  const all: string[] = [];
  for await (const key of store.list('')) all.push(key);
  assert.equal(all.length, 5);
  for (const key of ['../escape', 't_a/../../x', '/abs', 'T_A/x', 't_a/', 't_a//x', 'a/b c']) {
    await assert.rejects(store.put(key, bodyOf(Buffer.from('x'))), BadRequestError, key);
  }
  await assert.rejects(async () => {
    for await (const key of store.list('../')) assert.fail(key);
  }, BadRequestError);
});
