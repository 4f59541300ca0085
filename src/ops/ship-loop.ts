import { setTimeout as sleep } from 'node:timers/promises';
import type { Core } from '../core/context.js';
import { shipPending } from '../core/recovery/ship.js';

/** How long one run of the shipping job lasts before it hands its lease back to the scheduler. */
const RUN_MS = 30_000;

/** Ships every interval until the run's time is up or its signal aborts; returns what it shipped. */
export async function shipContinuously(core: Core, intervalMs: number, signal: AbortSignal): Promise<string> {
  const started = Date.now();
  let segments = 0;
  let entries = 0;
  let shippedSeq = 0;
  while (!signal.aborted && Date.now() - started < RUN_MS) {
    const shipped = await shipPending(core);
    segments += shipped.segments;
    entries += shipped.entries;
    shippedSeq = shipped.shippedSeq;
    await sleep(intervalMs, undefined, { signal }).catch(() => undefined);
  }
  return `${entries} entries shipped in ${segments} segments; shipped through ${shippedSeq}`;
}
