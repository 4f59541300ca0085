import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { openLocalKms } from '../../src/kms/local.js';
import { describeKmsConformance } from './conformance.js';

const folder = mkdtempSync(join(tmpdir(), 'strongroom-kms-conformance-'));
after(() => rmSync(folder, { recursive: true, force: true }));

// One store for every provider the suite opens, as two processes on one machine would share it.
const keyStoreFile = join(folder, 'keystore.json');
const masterKey = randomBytes(32);

describeKmsConformance('local', async () => {
  let offsetMs = 0;
  const kms = await openLocalKms({ keyStoreFile, masterKey, clock: () => new Date(Date.now() + offsetMs) });
  return {
    kms,
    advanceClock: (ms) => {
      offsetMs += ms;
    },
    close: () => kms.close(),
  };
});
