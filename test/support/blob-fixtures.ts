// Bodies and failures for blob-store tests. Failures are real folders made to fail, except
// `alteredOnWrite`, a fake transport that says so where it is used.
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { BlobStore } from '../../src/store/blob/blob-store.js';

export async function bytesOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** A body in uneven chunks, as it would arrive from a request. */
export const bodyOf = (data: Buffer) => Readable.from([data.subarray(0, 7), data.subarray(7, 70_000), data.subarray(70_000)].filter((c) => c.length > 0));

/** A body that sends `first`, then fails as a client that goes away does. */
export const failingBody = (first: Buffer) =>
  Readable.from(
    (function* () {
      yield first;
      throw new Error('the client went away');
    })(),
  );

/** A store root that can never be created (it lies under a regular file): every operation fails with ENOTDIR. */
export function unreachableRoot(dir: string): string {
  writeFileSync(join(dir, 'not-a-folder'), '');
  return join(dir, 'not-a-folder', 'blobs');
}

/**
 * Takes a store's folder away and leaves a regular file in its place, so every operation on the
 * store fails as on a lost disk (ENOTDIR). Returns the function that puts the folder back.
 */
export function takeDown(root: string): () => void {
  renameSync(root, `${root}.away`);
  writeFileSync(root, '');
  return () => {
    rmSync(root);
    renameSync(`${root}.away`, root);
  };
}

/** `store`, except that its put passes every chunk of the body through `alter` on the way. */
export function alteredOnWrite(store: BlobStore, alter: (chunk: Buffer, index: number) => Promise<Buffer>): BlobStore {
  return {
    ...store,
    put: (key, body) =>
      store.put(
        key,
        Readable.from(
          (async function* () {
            let index = 0;
            for await (const chunk of body as AsyncIterable<Buffer>) yield await alter(chunk, index++);
          })(),
        ),
      ),
  };
}

/** Flips one bit of the first chunk: a fault in transit that the store's digest must reveal. */
export const flipFirstBit = async (chunk: Buffer, index: number) => (index === 0 ? Buffer.concat([Buffer.from([chunk[0]! ^ 1]), chunk.subarray(1)]) : chunk);
