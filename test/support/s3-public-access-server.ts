// A stand-in for the three S3 calls that report whether a bucket is public: GetPublicAccessBlock
// (GET /bucket?publicAccessBlock), GetBucketPolicyStatus (?policyStatus) and GetBucketAcl (?acl).
// s3rver does not implement them (it answers 501 NotImplemented), so the refusal of a public bucket
// is tested against this node:http server, which answers with the XML bodies AWS S3 sends.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { S3BlobOptions } from '../../src/store/blob/s3.js';

const NS = 'http://s3.amazonaws.com/doc/2006-03-01/';
const OWNER_ID = '75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a';

export interface StandInBucket {
  /** The public access block's settings; null: the bucket has none. */
  publicAccessBlock: { BlockPublicAcls: boolean; IgnorePublicAcls: boolean; BlockPublicPolicy: boolean; RestrictPublicBuckets: boolean } | null;
  /** Whether the bucket policy is public; null: the bucket has no policy. */
  policyIsPublic: boolean | null;
  /** Groups the ACL grants READ to, besides the owner's FULL_CONTROL. */
  readGroups: ('AllUsers' | 'AuthenticatedUsers')[];
}

export const PRIVATE_BUCKET: StandInBucket = {
  publicAccessBlock: { BlockPublicAcls: true, IgnorePublicAcls: true, BlockPublicPolicy: true, RestrictPublicBuckets: true },
  policyIsPublic: false,
  readGroups: [],
};

const xml = (body: string) => `<?xml version="1.0" encoding="UTF-8"?>\n${body}`;

const errorXml = (code: string, message: string, bucket: string) =>
  xml(`<Error><Code>${code}</Code><Message>${message}</Message><BucketName>${bucket}</BucketName><RequestId>4442587FB7D0A2F9</RequestId><HostId>stand-in</HostId></Error>`);

function answer(bucket: string, config: StandInBucket, query: URLSearchParams): { status: number; body: string } {
  if (query.has('publicAccessBlock')) {
    const block = config.publicAccessBlock;
    if (block === null) return { status: 404, body: errorXml('NoSuchPublicAccessBlockConfiguration', 'The public access block configuration was not found', bucket) };
    const flags = Object.entries(block).map(([name, on]) => `<${name}>${on}</${name}>`).join('');
    return { status: 200, body: xml(`<PublicAccessBlockConfiguration xmlns="${NS}">${flags}</PublicAccessBlockConfiguration>`) };
  }
  if (query.has('policyStatus')) {
    if (config.policyIsPublic === null) return { status: 404, body: errorXml('NoSuchBucketPolicy', 'The bucket policy does not exist', bucket) };
    return { status: 200, body: xml(`<PolicyStatus xmlns="${NS}"><IsPublic>${config.policyIsPublic}</IsPublic></PolicyStatus>`) };
  }
  if (query.has('acl')) {
    const grantee = (type: string, inner: string) => `<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="${type}">${inner}</Grantee>`;
    const grants = [
      `<Grant>${grantee('CanonicalUser', `<ID>${OWNER_ID}</ID>`)}<Permission>FULL_CONTROL</Permission></Grant>`,
      ...config.readGroups.map((group) => `<Grant>${grantee('Group', `<URI>http://acs.amazonaws.com/groups/global/${group}</URI>`)}<Permission>READ</Permission></Grant>`),
    ];
    return {
      status: 200,
      body: xml(`<AccessControlPolicy xmlns="${NS}"><Owner><ID>${OWNER_ID}</ID></Owner><AccessControlList>${grants.join('')}</AccessControlList></AccessControlPolicy>`),
    };
  }
  return { status: 501, body: errorXml('NotImplemented', 'The stand-in answers only the public-access reports', bucket) };
}

export interface PublicAccessStandIn {
  options(bucket: string): S3BlobOptions;
  close(): Promise<void>;
}

/**
 * Serves `buckets` on 127.0.0.1 (path-style: /bucket?acl); any other bucket is NoSuchBucket. A
 * bucket set to 'ignores-subresources' answers every GET with an object listing, as a service
 * that does not know these subresources might.
 */
export async function startPublicAccessStandIn(buckets: Record<string, StandInBucket | 'ignores-subresources'>): Promise<PublicAccessStandIn> {
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://stand-in');
    const bucket = url.pathname.split('/')[1] ?? '';
    const config = buckets[bucket];
    const { status, body } =
      request.method !== 'GET'
        ? { status: 405, body: errorXml('MethodNotAllowed', 'The specified method is not allowed against this resource.', bucket) }
        : config === 'ignores-subresources'
          ? { status: 200, body: xml(`<ListBucketResult xmlns="${NS}"><Name>${bucket}</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`) }
          : config
            ? answer(bucket, config, url.searchParams)
            : { status: 404, body: errorXml('NoSuchBucket', 'The specified bucket does not exist', bucket) };
    response.writeHead(status, { 'content-type': 'application/xml' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    options: (bucket) => ({
      bucket,
      region: 'us-east-1',
      endpoint,
      forcePathStyle: true,
      prefix: '',
      credentials: { accessKeyId: 'AKIASTANDIN', secretAccessKey: 'stand-in-secret' },
    }),
    close: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}
