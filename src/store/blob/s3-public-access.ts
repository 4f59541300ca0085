import {
  GetBucketAclCommand,
  GetBucketPolicyStatusCommand,
  GetPublicAccessBlockCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { ConfigError } from '../../errors.js';
import { createS3Client, s3Settings, type S3BlobOptions } from './s3-client.js';
import { s3CallError, serviceAnswer } from './s3-errors.js';

/** The service answered, but without the setting asked about (a service that ignores the subresource). */
const NOT_REPORTED = Symbol('not reported');

/** What made the bucket public, or null when this answer says it is not. */
type Verdict = string | null | typeof NOT_REPORTED;

interface Question {
  operation: string;
  ask(client: S3Client, bucket: string): Promise<Verdict>;
  /** Error codes that are an answer: the setting does not exist on this bucket. */
  absent: Record<string, string | null>;
}

const BLOCK_FLAGS = ['BlockPublicAcls', 'IgnorePublicAcls', 'BlockPublicPolicy', 'RestrictPublicBuckets'] as const;
const PUBLIC_GROUPS: Record<string, string> = {
  'http://acs.amazonaws.com/groups/global/AllUsers': 'AllUsers',
  'http://acs.amazonaws.com/groups/global/AuthenticatedUsers': 'AuthenticatedUsers',
};

const QUESTIONS: Question[] = [
  {
    operation: 'GetPublicAccessBlock',
    async ask(client, bucket) {
      const config = (await client.send(new GetPublicAccessBlockCommand({ Bucket: bucket }))).PublicAccessBlockConfiguration;
      if (!config || BLOCK_FLAGS.every((flag) => config[flag] === undefined)) return NOT_REPORTED;
      const off = BLOCK_FLAGS.filter((flag) => config[flag] !== true);
      return off.length > 0 ? `its public access block leaves ${off.join(', ')} off` : null;
    },
    // Without a block, a policy or ACL can make the bucket public at any time.
    absent: { NoSuchPublicAccessBlockConfiguration: 'it has no public access block' },
  },
  {
    operation: 'GetBucketPolicyStatus',
    async ask(client, bucket) {
      const status = (await client.send(new GetBucketPolicyStatusCommand({ Bucket: bucket }))).PolicyStatus;
      if (status?.IsPublic === undefined) return NOT_REPORTED;
      return status.IsPublic ? 'its bucket policy makes it public' : null;
    },
    absent: { NoSuchBucketPolicy: null },
  },
  {
    operation: 'GetBucketAcl',
    async ask(client, bucket) {
      const acl = await client.send(new GetBucketAclCommand({ Bucket: bucket }));
      if (acl.Owner === undefined && acl.Grants === undefined) return NOT_REPORTED;
      const grants = (acl.Grants ?? []).flatMap((grant) => {
        const group = PUBLIC_GROUPS[grant.Grantee?.URI ?? ''];
        return group ? [`${grant.Permission ?? 'access'} to ${group}`] : [];
      });
      return grants.length > 0 ? `its ACL grants ${grants.join(', ')}` : null;
    },
    absent: {},
  },
];

/** Answers that mean "this service does not implement that call": S3-compatible services differ. */
const isUnsupported = (status: number, code: string) =>
  status === 400 || status === 405 || status === 501 || code === 'NotImplemented' || code === 'MethodNotAllowed';

/**
 * Asks the service whether the bucket is, or may be made, public: its public access block (all four
 * settings must be on), its policy status and its ACL (no grant to AllUsers or AuthenticatedUsers).
 * Throws ConfigError naming the bucket and each reason when any answer says so; a missing bucket or
 * refused credentials are ConfigErrors too. Calls the service does not implement (or answers without
 * the setting) are listed in `unsupported`: there, only the service's own controls keep it private.
 *
 * @example
 * const { unsupported } = await assertBucketNotPublic(options); // throws for a public bucket
 * if (unsupported.length > 0) log.warn({ unsupported }, 'the blob service does not report public access');
 */
export async function assertBucketNotPublic(options: S3BlobOptions): Promise<{ checked: string[]; unsupported: string[] }> {
  const settings = s3Settings(options);
  const client = createS3Client(settings);
  let outcomes: Outcome[];
  try {
    outcomes = await Promise.all(QUESTIONS.map((question) => outcomeOf(question, client, settings.bucket)));
  } finally {
    client.destroy();
  }
  const reasons = outcomes.flatMap((outcome) => (outcome.kind === 'answered' && outcome.publicBecause !== null ? [outcome.publicBecause] : []));
  if (reasons.length > 0) throw new ConfigError('blob.s3.bucket', `the bucket "${settings.bucket}" is not private: ${reasons.join('; ')}`);
  return {
    checked: outcomes.flatMap((outcome) => (outcome.kind === 'answered' ? [outcome.operation] : [])),
    unsupported: outcomes.flatMap((outcome) => (outcome.kind === 'unsupported' ? [`${outcome.operation} (${outcome.why})`] : [])),
  };
}

type Outcome = { operation: string } & ({ kind: 'answered'; publicBecause: string | null } | { kind: 'unsupported'; why: string });

async function outcomeOf(question: Question, client: S3Client, bucket: string): Promise<Outcome> {
  const { operation } = question;
  try {
    const verdict = await question.ask(client, bucket);
    if (verdict === NOT_REPORTED) return { operation, kind: 'unsupported', why: 'the answer does not carry the setting' };
    return { operation, kind: 'answered', publicBecause: verdict };
  } catch (error) {
    const answer = serviceAnswer(error);
    if (answer !== null) {
      if (Object.hasOwn(question.absent, answer.code)) return { operation, kind: 'answered', publicBecause: question.absent[answer.code] ?? null };
      if (isUnsupported(answer.status, answer.code)) return { operation, kind: 'unsupported', why: `${answer.status} ${answer.code}` };
    }
    throw s3CallError(error, operation, `s3://${bucket}`, bucket);
  }
}
