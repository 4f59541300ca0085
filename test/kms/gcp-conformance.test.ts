import { after, before } from 'node:test';
import { openGcpKms } from '../../src/kms/gcp.js';
import { describeKmsConformance } from './conformance.js';
import { startGcpFakeServer, type GcpFakeServer } from './gcp-fake-server.js';

// The same contract as every provider, against the fake Cloud KMS server that checks each request.
let server: GcpFakeServer;
before(async () => {
  server = await startGcpFakeServer();
});
after(() => server.stop());

describeKmsConformance('gcp', async () => {
  const kms = await openGcpKms({ keyRing: server.keyRing, destroyWaitSeconds: 86_400, client: server.client(), callTimeoutMs: 5_000 });
  return { kms, advanceClock: (ms) => server.advanceClock(ms), close: () => kms.close() };
});
