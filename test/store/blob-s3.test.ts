import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { BadRequestError, ConfigError, IntegrityError, NotFoundError, StrongroomError } from '../../src/errors.js';
import type { BlobStore } from '../../src/store/blob/blob-store.js';
import { assertBucketNotPublic, openS3BlobStore, type S3BlobOptions } from '../../src/store/blob/s3.js';
import { startCorruptingProxy } from '../support/s3-corrupting-proxy.js';
import { PRIVATE_BUCKET, startPublicAccessStandIn } from '../support/s3-public-access-server.js';
import { s3rverObjectFile, startS3Server } from '../support/s3-server.js';

const MIB = 1024 * 1024;
/** The smallest part S3 allows, so that a few MiB cross part boundaries. */
const PART = 5 * MIB;

const server = await startS3Server();
after(() => server.close());

const storeOf = (bucket: string, extra: Partial<S3BlobOptions> = {}) => openS3BlobStore({ ...server.options(bucket), partSizeBytes: PART, ...extra });

async function bytesOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

async function listed(store: BlobStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of store.list(prefix)) keys.push(key);
  return keys;
}

/** A body in uneven chunks, as it would arrive from a request. */
const bodyOf = (data: Buffer) => Readable.from([data.subarray(0, 7), data.subarray(7, 70_000), data.subarray(70_000)].filter((c) => c.length > 0));

/** A body that yields `bytes` and then fails, as when a client disconnects mid-upload. */
const failingBody = (bytes: number) =>
  Readable.from(
    (function* () {
      for (let sent = 0; sent < bytes; sent += MIB) yield randomBytes(Math.min(MIB, bytes - sent));
      throw new Error('the client went away');
    })(),
  );

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** The metadata s3rver keeps beside an object's bytes. */
const storedMetadata = (bucket: string, key: string) =>
  JSON.parse(readFileSync(s3rverObjectFile(server.folder, bucket, key).replace(/object$/, 'metadata.json'), 'utf8')) as Record<string, string>;

test('options that would expose objects or credentials, or break S3 rules, are refused naming the setting', async () => {
  const good = server.options('options');
  const refused: [Partial<S3BlobOptions>, string][] = [
    [{ endpoint: 'http://s3.example.com' }, 'blob.s3.endpoint'],
    [{ endpoint: 'https://key:secret@s3.example.com' }, 'blob.s3.endpoint'],
    [{ prefix: 'blobs' }, 'blob.s3.prefix'],
    [{ prefix: '../blobs/' }, 'blob.s3.prefix'],
    [{ bucket: 'No_Such/Bucket' }, 'blob.s3.bucket'],
    [{ credentials: { accessKeyId: 'S3RVER', secretAccessKey: '' } }, 'blob.s3.credentials'],
    [{ partSizeBytes: PART - 1 }, 'blob.s3.partSizeBytes'],
    [{ listPageSize: 1001 }, 'blob.s3.listPageSize'],
  ];
  for (const [change, key] of refused) {
    await assert.rejects(openS3BlobStore({ ...good, ...change }), (error: unknown) => error instanceof ConfigError && error.key === key, key);
    await assert.rejects(assertBucketNotPublic({ ...good, ...change }), ConfigError, key);
  }
  assert.ok(await openS3BlobStore({ ...good, endpoint: 'https://storage.googleapis.com', region: 'auto', prefix: 'strongroom/v1.blobs/' }));
});

test('objects round-trip with their size and SHA-256, in one PUT (with the SHA-256 as metadata) or across part boundaries', async () => {
  const store = await storeOf('round-trip');
  for (const size of [0, 1, PART, PART + 1, 2 * PART + 3]) {
    const data = randomBytes(size);
    const stored = await store.put(`t_a/o${size}`, bodyOf(data));
    assert.deepEqual(stored, { size, sha256: sha256(data) }, `size ${size}`);
    assert.deepEqual(await bytesOf(await store.get(`t_a/o${size}`)), data, `size ${size}`);
    assert.deepEqual(await store.head(`t_a/o${size}`), { size });
    if (size <= PART) assert.equal(storedMetadata('round-trip', `t_a/o${size}`)['x-amz-meta-sha256'], sha256(data), `size ${size}`);
  }
});

test('ranges are inclusive, also across a part boundary and up to the last byte', async () => {
  const store = await storeOf('ranges');
  const data = randomBytes(2 * PART + 3);
  await store.put('t_a/ranged', bodyOf(data));
  for (const [start, end] of [[1, 1], [PART - 2, PART + 1], [65_536, 131_071], [data.length - 2, data.length + 100]] as const) {
    const bytes = await bytesOf(await store.get('t_a/ranged', { start, end }));
    assert.ok(bytes.equals(data.subarray(start, end + 1)), `${start}-${end}`);
  }
  await assert.rejects(store.get('t_a/ranged', { start: 5, end: 4 }), BadRequestError);
  // s3rver answers bytes=0-0 with the whole object: an answer that is not the range asked for is refused.
  await assert.rejects(store.get('t_a/ranged', { start: 0, end: 0 }), IntegrityError);
});

test('an overwrite replaces the whole object; delete is idempotent; missing objects are NotFound or null', async () => {
  const store = await storeOf('overwrite');
  await store.put('t_a/x', bodyOf(randomBytes(PART + 10)));
  await store.put('t_a/x', bodyOf(Buffer.from('second')));
  assert.equal((await bytesOf(await store.get('t_a/x'))).toString(), 'second');
  await store.delete('t_a/x');
  await store.delete('t_a/x');
  await store.delete('t_a/never');
  assert.equal(await store.head('t_a/x'), null);
  await assert.rejects(store.get('t_a/x'), NotFoundError);
  await assert.rejects(store.get('t_a/x', { start: 0, end: 1 }), NotFoundError);
});

test('list gives the keys under a prefix in order, page after page, without the configured prefix; bad keys are refused', async () => {
  const store = await storeOf('listing', { prefix: 'strongroom/blobs/', listPageSize: 2 });
  const outside = await storeOf('listing');
  await outside.put('other/x', bodyOf(Buffer.from('not under the prefix')));
  for (const key of ['t_b/2', 't_a/2', 't_a/10', 't_a/sub/1', 't_c/1']) await store.put(key, bodyOf(Buffer.from(key)));
  assert.deepEqual(await listed(store, 't_a/'), ['t_a/10', 't_a/2', 't_a/sub/1']);
  assert.deepEqual(await listed(store, ''), ['t_a/10', 't_a/2', 't_a/sub/1', 't_b/2', 't_c/1']);
  assert.deepEqual(await listed(store, 't_z/'), []);
  assert.deepEqual(await listed(outside, ''), ['other/x', 'strongroom/blobs/t_a/10', 'strongroom/blobs/t_a/2', 'strongroom/blobs/t_a/sub/1', 'strongroom/blobs/t_b/2', 'strongroom/blobs/t_c/1']);
  for (const key of ['../escape', '/abs', 'T_A/x', 't_a/', 't_a//x', 'a/b c']) {
    await assert.rejects(store.put(key, bodyOf(Buffer.from('x'))), BadRequestError, key);
    await assert.rejects(store.get(key), BadRequestError, key);
  }
  await assert.rejects(listed(store, '../'), BadRequestError);
});

test('a body that fails midway leaves no object and the previous one intact, in one PUT or a multipart upload', async () => {
  const store = await storeOf('failing');
  for (const bytes of [100_000, 2 * PART + MIB]) {
    await assert.rejects(store.put(`t_a/new${bytes}`, failingBody(bytes)), /the client went away/);
    assert.equal(await store.head(`t_a/new${bytes}`), null);
    assert.equal(existsSync(s3rverObjectFile(server.folder, 'failing', `t_a/new${bytes}`)), false);
    const previous = randomBytes(1000);
    await store.put(`t_a/old${bytes}`, bodyOf(previous));
    await assert.rejects(store.put(`t_a/old${bytes}`, failingBody(bytes)), /the client went away/);
    assert.deepEqual(await bytesOf(await store.get(`t_a/old${bytes}`)), previous);
  }
  assert.deepEqual(await listed(store, ''), ['t_a/old100000', `t_a/old${2 * PART + MIB}`]);
});

test('a put whose stored bytes differ from those sent fails with IntegrityError, in one PUT or a multipart upload', async () => {
  const proxy = await startCorruptingProxy(server.endpoint);
  try {
    const store = await storeOf('corrupted', { endpoint: proxy.endpoint });
    for (const size of [1000, PART + 1]) {
      await assert.rejects(store.put(`t_a/o${size}`, bodyOf(randomBytes(size))), (error: unknown) => {
        assert.ok(error instanceof IntegrityError, String(error));
        assert.match(error.message, /s3:\/\/corrupted\/t_a\/o\d+ has ETag [0-9a-f]{32}, not the MD5 of the bytes sent/);
        return true;
      });
    }
  } finally {
    await proxy.close();
  }
});

test('a service that is down or silent gives "unavailable" errors on every operation', async () => {
  const stopped = await startS3Server();
  const down = await openS3BlobStore(stopped.options('gone'));
  await stopped.close();
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const { port } = silent.address() as { port: number };
  const hanging = await openS3BlobStore({ ...server.options('silent'), endpoint: `http://127.0.0.1:${port}`, requestTimeoutMs: 200 });
  try {
    for (const store of [down, hanging]) {
      const operations: [string, () => Promise<unknown>][] = [
        ['put', () => store.put('t_a/x', bodyOf(Buffer.from('x')))],
        ['get', () => store.get('t_a/x')],
        ['head', () => store.head('t_a/x')],
        ['delete', () => store.delete('t_a/x')],
        ['list', () => listed(store, 't_a/')],
      ];
      for (const [name, operation] of operations) {
        await assert.rejects(operation(), (error: unknown) => {
          assert.ok(error instanceof StrongroomError, `${store.name} ${name}: ${String(error)}`);
          assert.equal(error.code, 'unavailable', `${store.name} ${name}`);
          return true;
        });
      }
    }
  } finally {
    for (const socket of sockets) socket.destroy();
    silent.close();
  }
});

test('refused credentials are a configuration error whose message carries neither the key id nor the secret', async () => {
  const credentials = { accessKeyId: 'AKIAWRONGKEYID4TEST', secretAccessKey: 'wrong-secret-never-shown' };
  const store = await openS3BlobStore({ ...server.options('credentials'), credentials });
  for (const operation of [() => store.put('t_a/x', bodyOf(Buffer.from('x'))), () => store.get('t_a/x'), () => store.head('t_a/x')]) {
    await assert.rejects(operation(), (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      // A HEAD answer has no body, so no error code either.
      assert.match(error.message, /\(403 (InvalidAccessKeyId|Unknown)\)/);
      assert.ok(!error.message.includes(credentials.accessKeyId) && !error.message.includes(credentials.secretAccessKey), error.message);
      return true;
    });
  }
});

test('the public-access check refuses a bucket that is or may be made public, naming it and the reasons', async () => {
  const standIn = await startPublicAccessStandIn({
    'private-bucket': PRIVATE_BUCKET,
    'public-bucket': { publicAccessBlock: null, policyIsPublic: true, readGroups: ['AllUsers'] },
    'half-blocked': { ...PRIVATE_BUCKET, publicAccessBlock: { ...PRIVATE_BUCKET.publicAccessBlock!, BlockPublicPolicy: false, RestrictPublicBuckets: false } },
    'acl-bucket': { ...PRIVATE_BUCKET, policyIsPublic: null, readGroups: ['AuthenticatedUsers'] },
    'listing-bucket': 'ignores-subresources',
  });
  try {
    assert.deepEqual(await assertBucketNotPublic(standIn.options('private-bucket')), {
      checked: ['GetPublicAccessBlock', 'GetBucketPolicyStatus', 'GetBucketAcl'],
      unsupported: [],
    });
    const refusal = (bucket: string, reasons: string) =>
      assert.rejects(assertBucketNotPublic(standIn.options(bucket)), (error: unknown) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.equal(error.message, `invalid configuration: blob.s3.bucket: the bucket "${bucket}" is not private: ${reasons}`);
        return true;
      });
    await refusal('public-bucket', 'it has no public access block; its bucket policy makes it public; its ACL grants READ to AllUsers');
    await refusal('half-blocked', 'its public access block leaves BlockPublicPolicy, RestrictPublicBuckets off');
    await refusal('acl-bucket', 'its ACL grants READ to AuthenticatedUsers');
    await assert.rejects(assertBucketNotPublic(standIn.options('no-such-bucket')), /the bucket "no-such-bucket" does not exist/);
    // An answer without the setting reports nothing: unsupported, not private.
    assert.deepEqual(await assertBucketNotPublic(standIn.options('listing-bucket')), {
      checked: [],
      unsupported: ['GetPublicAccessBlock', 'GetBucketPolicyStatus', 'GetBucketAcl'].map((call) => `${call} (the answer does not carry the setting)`),
    });
  } finally {
    await standIn.close();
  }
});

test('against s3rver, which implements none of the public-access reports, every question is unsupported', async () => {
  assert.deepEqual(await assertBucketNotPublic(server.options('public-check')), {
    checked: [],
    unsupported: ['GetPublicAccessBlock (501 NotImplemented)', 'GetBucketPolicyStatus (501 NotImplemented)', 'GetBucketAcl (501 NotImplemented)'],
  });
});

test('the bytes s3rver keeps are exactly the ciphertext put, under the configured prefix, nothing else', async () => {
  const store = await storeOf('ciphertext', { prefix: 'blobs/' });
  const key = randomBytes(32);
  const seal = (plaintext: Buffer) => {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    return Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  };
  const small = seal(Buffer.from('customer record: alice@example.com'));
  const large = seal(Buffer.alloc(PART + MIB, 'customer file contents '));
  await store.put('t_a/small', bodyOf(small));
  await store.put('t_a/large', bodyOf(large));
  const objectFiles = readdirSync(join(server.folder, 'ciphertext'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('._S3rver_object'))
    .sort();
  assert.deepEqual(objectFiles, ['blobs/t_a/large._S3rver_object', 'blobs/t_a/small._S3rver_object']);
  assert.deepEqual(readFileSync(s3rverObjectFile(server.folder, 'ciphertext', 'blobs/t_a/small')), small);
  assert.deepEqual(readFileSync(s3rverObjectFile(server.folder, 'ciphertext', 'blobs/t_a/large')), large);
});
