import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { scrubAll } from '../../src/core/files/blob-repairs.js';
import { describeFound, fileBlobsUnder, filesUnder, marker, scanFiles } from '../support/disk-scan.js';
import { PRIVATE_BUCKET, startPublicAccessStandIn } from '../support/s3-public-access-server.js';
import { startS3Server, type S3Server } from '../support/s3-server.js';
import { startHarness, type Harness } from '../support/strongroom.js';

/** The replica in a bucket, through the S3 API: what a scale-out deployment configures. */
const s3Replica = (endpoint: string, bucket: string): Record<string, string> => ({
  STRONGROOM_BLOBS__REPLICA__KIND: 's3',
  STRONGROOM_BLOBS__REPLICA__S3__BUCKET: bucket,
  STRONGROOM_BLOBS__REPLICA__S3__ENDPOINT: endpoint,
  STRONGROOM_BLOBS__REPLICA__S3__FORCE_PATH_STYLE: 'true',
  STRONGROOM_BLOBS__REPLICA__S3__PREFIX: 'strongroom/',
  STRONGROOM_BLOBS__REPLICA__S3__ACCESS_KEY_ID: 'S3RVER',
  STRONGROOM_BLOBS__REPLICA__S3__SECRET_ACCESS_KEY: 'S3RVER',
  STRONGROOM_BLOBS__SCRUB_INTERVAL_HOURS: '0',
});

describe('files on a local folder replicated to an S3 bucket', () => {
  let s3: S3Server;
  let h: Harness;
  let t: { tenantId: string; apiKey: string };
  before(async () => {
    s3 = await startS3Server();
    s3.options('replica-bucket');
    h = await startHarness('sqlite', { env: s3Replica(s3.endpoint, 'replica-bucket') });
    t = await h.tenant('s3');
  });
  after(async () => {
    await h.close();
    await s3.close();
  });

  test('files round-trip, versions and undelete work, both copies are identical ciphertext, and the bucket holds no plaintext', async () => {
    const secret = marker('s3-body');
    const path = `s3/${marker('s3-name')}.txt`;
    const url = `/v1/tenants/${t.tenantId}/files/${path}`;
    const put = (body: string) => h.call('PUT', url, { key: t.apiKey, rawBody: body, headers: { 'content-type': 'text/plain' } });
    assert.equal((await put(`${secret} one`.repeat(2000))).status, 201);
    assert.equal((await put(`${secret} two`)).status, 201);
    assert.equal((await h.call('DELETE', url, { key: t.apiKey })).status, 204);
    assert.equal((await h.call('POST', `/v1/tenants/${t.tenantId}/file-versions/${path}`, { key: t.apiKey, body: { version: 1 } })).status, 201);
    assert.equal((await h.call('GET', url, { key: t.apiKey })).text, `${secret} one`.repeat(2000));
    assert.equal((await h.call('GET', `${url}?version=2`, { key: t.apiKey })).text, `${secret} two`);

    const primary = fileBlobsUnder(h.config.blobs.primary.path!).map((f) => readFileSync(f)).sort(Buffer.compare);
    const bucket = fileBlobsUnder(s3.folder).filter((f) => f.endsWith('._S3rver_object'));
    assert.equal(bucket.length, 2);
    assert.deepEqual(bucket.map((f) => readFileSync(f)).sort(Buffer.compare), primary, 'the bucket holds the same ciphertext as the primary');
    const scan = scanFiles(filesUnder(s3.folder), [secret, path]);
    assert.deepEqual(scan.found, new Map(), `plaintext in the bucket: ${describeFound(scan.found)}`);
  });

  test('scrub repairs a corrupt copy in the bucket from the folder', async () => {
    const [object] = fileBlobsUnder(s3.folder).filter((f) => f.endsWith('._S3rver_object'));
    const good = readFileSync(object!);
    writeFileSync(object!, Buffer.concat([good.subarray(0, 100), Buffer.from('corrupted'), good.subarray(109)]));
    const result = await scrubAll(h.core);
    assert.equal(result.repaired, 1, JSON.stringify(result));
    assert.deepEqual(readFileSync(object!), good);
  });
});

test('a bucket that reports public access stops start-up, naming the bucket and the backend', async () => {
  const standIn = await startPublicAccessStandIn({ 'open-bucket': { ...PRIVATE_BUCKET, policyIsPublic: true }, 'closed-bucket': PRIVATE_BUCKET });
  try {
    const endpoint = new URL(standIn.options('open-bucket').endpoint!).origin;
    await assert.rejects(startHarness('sqlite', { env: s3Replica(endpoint, 'open-bucket') }), (error: unknown) => {
      assert.match(String(error), /blobs\.replica\.s3\.bucket: the bucket "open-bucket" is not private: its bucket policy makes it public/);
      return true;
    });
  } finally {
    await standIn.close();
  }
});
