import {
  BadRequestError,
  ConfigError,
  IntegrityError,
  NotFoundError,
  StrongroomError,
  UnavailableError,
} from '../../errors.js';

/** The service's answer to a failed call: its HTTP status and error code (e.g. 404 NoSuchKey). */
export interface ServiceAnswer {
  status: number;
  code: string;
}

/** Error codes are short names; anything else is not repeated in our messages. */
const CODE = /^[A-Za-z0-9.]{1,64}$/;

/** The status and code the service answered with, or null when the call failed before any answer. */
export function serviceAnswer(error: unknown): ServiceAnswer | null {
  const failure = error as { $metadata?: { httpStatusCode?: unknown }; name?: unknown } | null;
  const status = failure?.$metadata?.httpStatusCode;
  if (typeof status !== 'number') return null;
  const name = failure?.name;
  return { status, code: typeof name === 'string' && CODE.test(name) ? name : 'an unnamed error' };
}

/** Worth a retry later: the service or the path to it, not the request. */
const TRANSIENT_CODES = new Set(['RequestTimeout', 'SlowDown', 'ServiceUnavailable', 'InternalError']);

/**
 * Our error for a failed S3 call on `subject` (`s3://bucket/key`). Messages carry the status and
 * the service's error code, never the SDK's message or fields: S3 error bodies can quote the access
 * key id, the string to sign and the canonical request.
 */
export function s3CallError(error: unknown, operation: string, subject: string, bucket: string): StrongroomError {
  if (error instanceof StrongroomError) return error;
  const answer = serviceAnswer(error);
  if (answer === null) {
    if ((error as { name?: unknown } | null)?.name === 'CredentialsProviderError') {
      return new ConfigError('blob.s3.credentials', 'none are configured and the SDK default chain found none');
    }
    return new UnavailableError(`S3 ${operation} on ${subject} failed before an answer from the service`);
  }
  const { status, code } = answer;
  const what = `${operation} on ${subject} (${status} ${code})`;
  if (status === 408 || status === 429 || status >= 500 || TRANSIENT_CODES.has(code)) {
    return new UnavailableError(`S3 is unavailable: ${what}`);
  }
  if (code === 'NoSuchBucket') return new ConfigError('blob.s3.bucket', `the bucket "${bucket}" does not exist (${what})`);
  if (status === 404) return new NotFoundError(`${subject} not found`);
  if (status === 401 || status === 403) {
    return new ConfigError('blob.s3.credentials', `the service refused ${what}: check the credentials and the bucket's access policy`);
  }
  if (status === 301 || code === 'AuthorizationHeaderMalformed') return new ConfigError('blob.s3.region', `the bucket is in another region: ${what}`);
  if (status === 416) return new BadRequestError(`the range is outside ${subject}`);
  // Content-MD5 did not match what the service received.
  if (code === 'BadDigest') return new IntegrityError(`the body of ${subject} was damaged on its way to the service (${what})`);
  return new StrongroomError('internal', `S3 refused ${what}`);
}
