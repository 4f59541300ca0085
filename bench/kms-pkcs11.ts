/**
 * PKCS#11 KMS soak: N concurrent wrap+unwrap loops on a throwaway SoftHSM2 token for a while, with a
 * rotation every second; prints round trips per second and the event-loop delay, and exits 1 on any
 * failure or wrong result. The test suite runs the same for 3 s; this is the long version.
 *
 * Usage: npm run build && node dist/bench/kms-pkcs11.js [--duration 30] [--loops 64] [--sessions 8] [--keys 1]
 *
 * SoftHSM2's file store re-checks every object on each search, so figures fall as the token fills;
 * --keys adds idle keys to show it.
 */
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { openPkcs11Kms } from '../src/kms/pkcs11.js';
import { createSoftHsmToken } from '../test/support/softhsm.js';

const say = (text: string) => process.stdout.write(`${text}\n`);

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '30' },
    loops: { type: 'string', default: '64' },
    sessions: { type: 'string', default: '8' },
    keys: { type: 'string', default: '1' },
  },
});
const [durationS, loops, sessions, keys] = [values.duration, values.loops, values.sessions, values.keys].map(Number) as [number, number, number, number];

const token = await createSoftHsmToken();
const kms = await openPkcs11Kms({ library: token.library, tokenLabel: token.tokenLabel, pin: token.pin, sessions });
let failed = false;
try {
  const name = 'bench.soak';
  await kms.createKey(name);
  for (let i = 1; i < keys; i++) await kms.createKey(`bench.idle-${i}`);

  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const stopAt = Date.now() + durationS * 1000;
  let pairs = 0;
  let rotations = 0;
  const aad = Buffer.from('bench|data-key');
  await Promise.all([
    ...Array.from({ length: loops }, async () => {
      while (Date.now() < stopAt) {
        const dataKey = randomBytes(32);
        const unwrapped = await kms.unwrapKey(name, await kms.wrapKey(name, dataKey, aad), aad);
        if (!unwrapped.equals(dataKey)) throw new Error('an unwrapped key differs from the one wrapped');
        pairs += 1;
      }
    }),
    (async () => {
      while (Date.now() < stopAt) {
        await sleep(1000);
        await kms.rotateKey(name);
        rotations += 1;
      }
    })(),
  ]);
  delay.disable();
  say(`pkcs11 (SoftHSM2): ${loops} loops, ${sessions} sessions, ${keys} keys on the token, ${durationS} s`);
  say(`  wrap+unwrap round trips: ${pairs} (${Math.round(pairs / durationS)}/s), rotations: ${rotations}`);
  say(`  event-loop delay: p50 ${(delay.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms, max ${(delay.max / 1e6).toFixed(1)} ms`);
} catch (error) {
  failed = true;
  say(`FAILED: ${error instanceof Error ? error.message : String(error)}`);
} finally {
  await kms.close();
  await token.remove();
}
process.exitCode = failed ? 1 : 0;
