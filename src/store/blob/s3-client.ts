import { S3Client } from '@aws-sdk/client-s3';
import { ConfigError } from '../../errors.js';

/** Where and how to reach an S3-compatible bucket (AWS S3, Cloud Storage's XML API, MinIO, R2…). */
export interface S3BlobOptions {
  bucket: string;
  /** e.g. 'us-east-1'; 'auto' for R2 and Cloud Storage. */
  region: string;
  /** null: AWS; else the service's URL, e.g. https://storage.googleapis.com or http://127.0.0.1:PORT. */
  endpoint: string | null;
  forcePathStyle: boolean;
  /** '' or a key prefix ending in '/', put before every object key. */
  prefix: string;
  /** null: the SDK's default chain (environment, shared files, instance or workload identity). */
  credentials: { accessKeyId: string; secretAccessKey: string } | null;
  /**
   * Longest wait for a connection, or with no bytes moving on an open one, before a call fails as
   * unavailable (default 30 s). A get's reader that stops reading for this long loses the stream.
   */
  requestTimeoutMs?: number;
  /** Size of each part of a multipart upload; bodies up to this size go in one request. */
  partSizeBytes?: number;
  /** Keys asked for per ListObjectsV2 call. */
  listPageSize?: number;
}

/** The options with their defaults applied. */
export type S3Settings = Required<S3BlobOptions>;

const MIB = 1024 * 1024;
/** S3's smallest part (except the last) and largest single request. */
const MIN_PART_BYTES = 5 * MIB;
const MAX_PART_BYTES = 5 * 1024 * MIB;
const BUCKET = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;
/** No "." or ".." segment: URL normalisation could turn a key under them into another path. */
const PREFIX = /^([A-Za-z0-9_-][A-Za-z0-9._-]*\/)*$/;
const LOOPBACK = new Set(['127.0.0.1', '[::1]', 'localhost']);

const isWholeNumber = (value: number, min: number, max: number) => Number.isSafeInteger(value) && value >= min && value <= max;

/** Checks the options and fills in the defaults; throws ConfigError naming the first bad one. */
export function s3Settings(options: S3BlobOptions): S3Settings {
  const settings: S3Settings = {
    ...options,
    requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
    partSizeBytes: options.partSizeBytes ?? 8 * MIB,
    listPageSize: options.listPageSize ?? 1000,
  };
  if (!BUCKET.test(settings.bucket)) throw new ConfigError('blob.s3.bucket', 'must be a bucket name (lower-case letters, digits, ".", "-", "_")');
  if (settings.region === '') throw new ConfigError('blob.s3.region', 'must not be empty');
  if (!PREFIX.test(settings.prefix)) throw new ConfigError('blob.s3.prefix', 'must be empty or segments of letters, digits, ".", "_", "-" (not starting with "."), each ending in "/"');
  if (settings.endpoint !== null) checkEndpoint(settings.endpoint);
  if (settings.credentials && (!settings.credentials.accessKeyId || !settings.credentials.secretAccessKey)) {
    throw new ConfigError('blob.s3.credentials', 'needs both an access key id and a secret access key');
  }
  if (!isWholeNumber(settings.requestTimeoutMs, 1, 600_000)) throw new ConfigError('blob.s3.requestTimeoutMs', 'must be between 1 and 600000');
  if (!isWholeNumber(settings.partSizeBytes, MIN_PART_BYTES, MAX_PART_BYTES)) {
    throw new ConfigError('blob.s3.partSizeBytes', `must be between ${MIN_PART_BYTES} (5 MiB) and ${MAX_PART_BYTES} (5 GiB)`);
  }
  if (!isWholeNumber(settings.listPageSize, 1, 1000)) throw new ConfigError('blob.s3.listPageSize', 'must be between 1 and 1000');
  return settings;
}

function checkEndpoint(endpoint: string): void {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new ConfigError('blob.s3.endpoint', 'must be an http(s) URL');
  }
  // Credentials in the URL would reach logs and error messages; they belong in blob.s3.credentials.
  if (url.username || url.password) throw new ConfigError('blob.s3.endpoint', 'must not carry credentials');
  // Plain HTTP would expose objects and request metadata on the network: only to this machine.
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK.has(url.hostname))) {
    throw new ConfigError('blob.s3.endpoint', 'must be https (plain http only to a loopback address)');
  }
  if (url.search || url.hash) throw new ConfigError('blob.s3.endpoint', 'must not have a query or fragment');
}

export function createS3Client(settings: S3Settings): S3Client {
  return new S3Client({
    region: settings.region,
    ...(settings.endpoint === null ? {} : { endpoint: settings.endpoint }),
    forcePathStyle: settings.forcePathStyle,
    ...(settings.credentials ? { credentials: settings.credentials } : {}),
    // Checksums only where S3 demands them: with the SDK's default checksums, s3rver stores the
    // aws-chunked framing of streamed bodies as object bytes. Content-MD5 and the ETag check in
    // s3-put.ts guard the bytes instead.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // Idle timeouts, not whole-request ones: a large part on a slow link is fine while bytes move.
    requestHandler: { connectionTimeout: settings.requestTimeoutMs, socketTimeout: settings.requestTimeoutMs },
    maxAttempts: 3,
  });
}
