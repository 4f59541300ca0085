import { CopyObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { IntegrityError, PayloadTooLargeError } from '../../errors.js';
import type { StoredObject } from './blob-store.js';
import { BodyDigests, type Digests } from './s3-digests.js';
import { s3CallError } from './s3-errors.js';

/** The largest object CopyObject can rewrite in one call, which a multipart put needs (see below). */
const MAX_OBJECT_BYTES = 5 * 1024 ** 3;
/** Parts in flight at once. With 8 MiB parts a put holds about 100 MiB of buffers, whatever the body's length (measured up to 1 GiB). */
const QUEUE_SIZE = 4;
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
 * in one PUT with Content-MD5 and the SHA-256 as metadata; a longer one in a multipart upload, whose
 * metadata can only be set at its start, before the SHA-256 is known: a copy onto itself adds it.
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
        if (digests.size > MAX_OBJECT_BYTES) throw new PayloadTooLargeError(`an S3 object holds at most ${MAX_OBJECT_BYTES} bytes`);
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
    const etag = await checkStored(target, stored, [stored.multipartEtag, stored.md5.toString('hex')]);
    operation = 'CopyObject';
    await client.send(
      new CopyObjectCommand({
        Bucket: bucket,
        Key: key,
        CopySource: encodeURI(`${bucket}/${key}`),
        CopySourceIfMatch: etag,
        MetadataDirective: 'REPLACE',
        Metadata: { sha256: stored.sha256 },
      }),
    );
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
 * form (Cloud Storage's multipart ETags are not MD5-based). Returns the ETag.
 */
async function checkStored(target: PutTarget, stored: Digests, expected: string[]): Promise<string> {
  const head = await target.client.send(new HeadObjectCommand({ Bucket: target.bucket, Key: target.objectKey }));
  if (head.ContentLength !== stored.size) {
    throw new IntegrityError(`${target.subject} holds ${head.ContentLength ?? 'an unknown number of'} bytes after a put of ${stored.size}`);
  }
  const etag = (head.ETag ?? '').replaceAll('"', '').toLowerCase();
  const encrypted = head.SSECustomerAlgorithm !== undefined || (head.ServerSideEncryption ?? '').startsWith('aws:kms');
  if (!encrypted && MD5_ETAG.test(etag) && !expected.includes(etag)) {
    throw new IntegrityError(`${target.subject} has ETag ${etag}, not the MD5 of the bytes sent (${expected.join(' or ')})`);
  }
  return head.ETag ?? '';
}
