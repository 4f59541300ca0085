import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import type { StoredObject } from './blob-store.js';

/** Resolves once `branch` can take more, or once it is gone (destroyed or closed). */
function drainedOrGone(branch: Writable): Promise<void> {
  if (branch.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      branch.off('drain', done);
      branch.off('close', done);
      resolve();
    };
    branch.on('drain', done);
    branch.on('close', done);
  });
}

/**
 * Feeds one body to several branches at the pace of the slowest: every chunk goes to each live
 * branch, and the next chunk is read only when every branch that asked to wait has drained or gone,
 * so memory stays flat whatever the body's size. A destroyed branch is skipped from then on; it
 * never stalls the others. Resolves with the size and SHA-256 of the bytes sent, so each copy's
 * reported digest can be checked against what it was given.
 *
 * When the body fails, every branch is destroyed with its error (no backend may commit a partial
 * object) and that error is thrown. When `signal` aborts, the body is destroyed (to stop waiting
 * for it) and `signal.reason` is thrown, which tells the caller its own abort from a body failure.
 */
export async function fanOut(body: Readable, branches: readonly Writable[], signal: AbortSignal): Promise<StoredObject> {
  const hash = createHash('sha256');
  let size = 0;
  const stopReading = () => body.destroy();
  signal.addEventListener('abort', stopReading, { once: true });
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
      const waits: Promise<void>[] = [];
      for (const branch of branches) {
        if (!branch.destroyed && !branch.write(chunk)) waits.push(drainedOrGone(branch));
      }
      await Promise.all(waits);
    }
    signal.throwIfAborted();
    for (const branch of branches) if (!branch.destroyed) branch.end();
    return { size, sha256: hash.digest('hex') };
  } catch (error) {
    const failure: unknown = signal.aborted ? signal.reason : error;
    for (const branch of branches) branch.destroy(failure instanceof Error ? failure : undefined);
    throw failure;
  } finally {
    signal.removeEventListener('abort', stopReading);
  }
}
