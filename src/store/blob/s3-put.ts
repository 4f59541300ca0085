import { HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { IntegrityError } from '../../errors.js';
import type { StoredObject } from './blob-store.js';
import { BodyDigests, type Digests } from './s3-digests.js';
import { s3CallError } from './s3-errors.js';

/** Parts in flight at once: with 8 MiB parts a put holds a few tens of MiB of buffers, whatever the body's length. */
const QUEUE_SIZE = 2;
const MD5_ETAG = /^[0-9a-f]{32}(-\d+)?$/;

export interface PutTarget {
  client: S3Client;
  bucket: string;
  /** The key in the bucket, the configured prefix included. */
  objectKey: string;
  /** `s3://bucket/key`, for messages. */
  subject: string;
  partSizeBytes: number;
}

/**
 * Streams `body` to the object and checks what the service stored. A body of at most one part goes
 * in one PUT with Content-MD5 and the SHA-256 as metadata; a longer one in a multipart upload (whose
 * metadata is set before the SHA-256 is known, so it has none: the database keeps every digest).
 * A failing body or service call aborts the multipart upload, so no object appears. When the stored
 * size or ETag does not match the body, the put fails with IntegrityError and the object stays as
 * stored: deleting it could remove a concurrent writer's object, and no caller records a failed put.
 */
export async function putObject(target: PutTarget, body: Readable): Promise<StoredObject> {
  const { client, bucket, objectKey: key, subject, partSizeBytes } = target;
  const digests = new BodyDigests(partSizeBytes);
  const bodyFailure: { failed: boolean; error?: unknown } = { failed: false };
  const source = (async function* () {
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        digests.update(chunk);
        yield chunk;
      }
    } catch (error) {
      bodyFailure.failed = true;
      bodyFailure.error = error;
      throw error;
    }
  })();
  let operation = 'PutObject';
  try {
    const { chunks, ended } = await readPast(source, partSizeBytes);
    if (ended) {
      const stored = digests.finish();
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: Buffer.concat(chunks),
          ContentLength: stored.size,
          ContentMD5: stored.md5.toString('base64'),
          Metadata: { sha256: stored.sha256 },
        }),
      );
      operation = 'HeadObject';
      await checkStored(target, stored, [stored.md5.toString('hex')]);
      return { size: stored.size, sha256: stored.sha256 };
    }
    operation = 'multipart upload';
    const upload = new Upload({
      client,
      params: { Bucket: bucket, Key: key, Body: Readable.from(resume(chunks, source)) },
      partSize: partSizeBytes,
      queueSize: QUEUE_SIZE,
      leavePartsOnError: false,
    });
    await upload.done();
    const stored = digests.finish();
    operation = 'HeadObject';
    // s3rver reports the MD5 of the whole object for a multipart upload too.
    await checkStored(target, stored, [stored.multipartEtag, stored.md5.toString('hex')]);
    return { size: stored.size, sha256: stored.sha256 };
  } catch (error) {
    // As pipeline would: what is left of the body is not wanted.
    body.destroy();
    // The body's own error, not whatever the abort that followed it reported.
    if (bodyFailure.failed) throw bodyFailure.error;
    throw s3CallError(error, operation, subject, bucket);
  }
}

/** Chunks until they hold more than `limit` bytes, or the whole body when it ends first. */
async function readPast(source: AsyncGenerator<Buffer>, limit: number): Promise<{ chunks: Buffer[]; ended: boolean }> {
  const chunks: Buffer[] = [];
  let length = 0;
  while (length <= limit) {
    const next = await source.next();
    if (next.done) return { chunks, ended: true };
    chunks.push(next.value);
    length += next.value.length;
  }
  return { chunks, ended: false };
}

async function* resume(chunks: Buffer[], source: AsyncGenerator<Buffer>): AsyncGenerator<Buffer> {
  yield* chunks;
  yield* source;
}

/**
 * HEADs the object: its size must be the body's, and its ETag one of `expected` where the ETag is an
 * MD5 at all: not under SSE-KMS or SSE-C, whose ETags are not MD5s of the data, and not in another
 * form (Cloud Storage's multipart ETags are not MD5-based).
 */
async function checkStored(target: PutTarget, stored: Digests, expected: string[]): Promise<void> {
  const head = await target.client.send(new HeadObjectCommand({ Bucket: target.bucket, Key: target.objectKey }));
  if (head.ContentLength !== stored.size) {
    throw new IntegrityError(`${target.subject} holds ${head.ContentLength ?? 'an unknown number of'} bytes after a put of ${stored.size}`);
  }
  const etag = (head.ETag ?? '').replaceAll('"', '').toLowerCase();
  const encrypted = head.SSECustomerAlgorithm !== undefined || (head.ServerSideEncryption ?? '').startsWith('aws:kms');
  if (!encrypted && MD5_ETAG.test(etag) && !expected.includes(etag)) {
    throw new IntegrityError(`${target.subject} has ETag ${etag}, not the MD5 of the bytes sent (${expected.join(' or ')})`);
  }
}
