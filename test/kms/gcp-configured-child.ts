// Run by gcp-configured.test.ts in a process of its own, so that its trust store (NODE_EXTRA_CA_CERTS,
// read at start-up) holds the test CA: opens the gcp provider from configuration alone, as the server
// does, wraps and unwraps one data key, and prints what happened as one line of JSON.
import { randomBytes } from 'node:crypto';
import { StrongroomError } from '../../src/errors.js';
import { openKms, type GcpKmsConfig } from '../../src/kms/index.js';

/** The one line of JSON the parent test reads. */
const report = (result: unknown) => process.stdout.write(`${JSON.stringify(result)}\n`);

const gcp = JSON.parse(process.env.STRONGROOM_TEST_GCP_CONFIG ?? '{}') as GcpKmsConfig;
const kms = await openKms({ provider: 'gcp', gcp, destroyWaitSeconds: 86_400 });
try {
  await kms.createKey('tenant.configured');
  const dataKey = randomBytes(32);
  const aad = Buffer.from('configured|data|1');
  const unwrapped = await kms.unwrapKey('tenant.configured', await kms.wrapKey('tenant.configured', dataKey, aad), aad);
  report({ roundTrip: unwrapped.equals(dataKey), health: await kms.health() });
} catch (error) {
  report(error instanceof StrongroomError ? { error: error.code, key: (error as { key?: string }).key } : { error: String(error) });
} finally {
  await kms.close();
}
