import type { Config } from '../../config/schema.js';
import type { BlobStore } from './blob-store.js';
import { openFsBlobStore } from './fs.js';
import { assertBucketNotPublic, openS3BlobStore, type S3BlobOptions } from './s3.js';
import { openReplicatedBlobStore, type ReplicaMiss, type ReplicatedBlobStore } from './replicated.js';

type BackendConfig = Config['blobs']['primary'];

/**
 * One configured backend, named `primary` or `replica` (the names the repair queue and metrics use).
 * A bucket is asked whether it is public before anything is stored in it, and refused if it is.
 */
async function openBackend(backend: BackendConfig, name: string): Promise<BlobStore> {
  if (backend.kind === 'fs') return openFsBlobStore(backend.path!, name);
  const { bucket, region, endpoint, forcePathStyle, prefix, accessKeyId, secretAccessKey } = backend.s3;
  const options: S3BlobOptions = {
    bucket: bucket!,
    region,
    endpoint,
    forcePathStyle,
    prefix,
    credentials: accessKeyId !== null && secretAccessKey !== null ? { accessKeyId, secretAccessKey } : null,
  };
  await assertBucketNotPublic(options);
  return openS3BlobStore(options, name);
}

/** The configured primary and replica, replicated under the configured write policy. */
export async function openBlobs(config: Config['blobs'], onReplicaMissed: (miss: ReplicaMiss) => Promise<void>): Promise<ReplicatedBlobStore> {
  return openReplicatedBlobStore({
    primary: await openBackend(config.primary, 'primary'),
    replicas: [await openBackend(config.replica, 'replica')],
    writePolicy: config.writePolicy,
    onReplicaMissed,
  });
}
