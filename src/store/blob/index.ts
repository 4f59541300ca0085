import type { Config } from '../../config/schema.js';
import { ConfigError } from '../../errors.js';
import type { BlobStore } from './blob-store.js';
import { openFsBlobStore } from './fs.js';
import type { S3BlobOptions } from './s3.js';
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
  // Loaded only here: the AWS SDK costs a deployment without S3 tens of MB of memory.
  const { assertBucketNotPublic, openS3BlobStore } = await import('./s3.js');
  await assertBucketNotPublic(options).catch((error: unknown) => {
    // Named by its place in this configuration, so the operator knows which backend to fix.
    throw error instanceof ConfigError ? new ConfigError(`blobs.${name}.s3.bucket`, error.message.replace(/^invalid configuration: [^:]+: /, '')) : error;
  });
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
