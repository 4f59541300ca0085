import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { BadRequestError, IntegrityError, StrongroomError } from '../../errors.js';
import { checkObjectKey, type BlobStore } from './blob-store.js';
import { createS3Client, s3Settings, type S3BlobOptions } from './s3-client.js';
import { s3CallError, serviceAnswer } from './s3-errors.js';
import { putObject } from './s3-put.js';

export type { S3BlobOptions } from './s3-client.js';
export { assertBucketNotPublic } from './s3-public-access.js';

/**
 * Whether Content-Range is the range asked for, cut at the object's end as S3 cuts it. A service
 * that misreads the Range header must not hand back other bytes (s3rver answers 0-0 with all).
 */
function isRangeAnswer(contentRange: string | undefined, range: { start: number; end: number }): boolean {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange ?? '');
  if (!match) return false;
  const size = match[3] === '*' ? Infinity : Number(match[3]);
  return Number(match[1]) === range.start && Number(match[2]) === Math.min(range.end, size - 1);
}

/**
 * Blobs as objects in an S3-compatible bucket, under the configured prefix. Failures are typed:
 * NotFoundError for a missing object, UnavailableError ('unavailable') when the service cannot be
 * reached, times out or answers 5xx, ConfigError for a missing bucket or refused credentials.
 * Opening makes no call to the service; `assertBucketNotPublic` is the start-up check.
 *
 * @example
 * const blobs = await openS3BlobStore({ bucket: 'acme-blobs', region: 'eu-west-1', endpoint: null,
 *   forcePathStyle: false, prefix: 'strongroom/', credentials: null });
 * const { size, sha256 } = await blobs.put('t_1/f_2', ciphertextStream);
 */
export async function openS3BlobStore(options: S3BlobOptions, name?: string): Promise<BlobStore> {
  const settings = s3Settings(options);
  const { bucket, prefix } = settings;
  const client = createS3Client(settings);
  const objectKey = (key: string) => `${prefix}${checkObjectKey(key)}`;
  const subject = (key: string) => `s3://${bucket}/${prefix}${key}`;

  return {
    name: name ?? `s3:${bucket}/${prefix}`,
    async put(key, body) {
      return putObject({ client, bucket, objectKey: objectKey(key), subject: subject(key), partSizeBytes: settings.partSizeBytes }, body);
    },
    async get(key, range) {
      const Key = objectKey(key);
      if (range && !(Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end) && range.start >= 0 && range.end >= range.start)) {
        throw new BadRequestError('invalid byte range');
      }
      try {
        const answer = await client.send(
          new GetObjectCommand({ Bucket: bucket, Key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }),
        );
        const body = answer.Body;
        if (!(body instanceof Readable)) throw new StrongroomError('internal', `GetObject on ${subject(key)} gave no readable body`);
        if (range && !isRangeAnswer(answer.ContentRange, range)) {
          body.destroy();
          throw new IntegrityError(`the service answered bytes ${range.start}-${range.end} of ${subject(key)} with ${answer.ContentRange ?? 'the whole object'}`);
        }
        return body;
      } catch (error) {
        throw s3CallError(error, 'GetObject', subject(key), bucket);
      }
    },
    async head(key) {
      const Key = objectKey(key);
      try {
        const answer = await client.send(new HeadObjectCommand({ Bucket: bucket, Key }));
        if (answer.ContentLength === undefined) throw new StrongroomError('internal', `HeadObject on ${subject(key)} gave no size`);
        return { size: answer.ContentLength };
      } catch (error) {
        // A HEAD has no body, so a missing bucket is a 404 without the NoSuchBucket code: that is a
        // missing object here, and other calls name the bucket.
        if (serviceAnswer(error)?.status === 404) return null;
        throw s3CallError(error, 'HeadObject', subject(key), bucket);
      }
    },
    async delete(key) {
      const Key = objectKey(key);
      try {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
      } catch (error) {
        throw s3CallError(error, 'DeleteObject', subject(key), bucket);
      }
    },
    async *list(keyPrefix) {
      if (!/^[a-z0-9_/-]*$/.test(keyPrefix)) throw new BadRequestError('invalid object key prefix');
      let token: string | undefined;
      do {
        let page;
        try {
          page = await client.send(
            new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}${keyPrefix}`, MaxKeys: settings.listPageSize, ContinuationToken: token }),
          );
        } catch (error) {
          throw s3CallError(error, 'ListObjectsV2', `s3://${bucket}/${prefix}${keyPrefix}`, bucket);
        }
        // S3 lists keys in UTF-8 binary order, which is lexical order for our ASCII keys.
        for (const item of page.Contents ?? []) if (item.Key !== undefined) yield item.Key.slice(prefix.length);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
        if (page.IsTruncated && token === undefined) {
          throw new StrongroomError('internal', `ListObjectsV2 on s3://${bucket}/${prefix}${keyPrefix} was cut short without a continuation token`);
        }
      } while (token !== undefined);
    },
  };
}
