import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { IntegrityError, NotFoundError } from '../../errors.js';
import { checkObjectKey, type BlobStore, type StoredObject } from './blob-store.js';

/**
 * - `ok`: the copy has the expected size and SHA-256.
 * - `repaired`: it was missing or corrupt and now holds a verified copy of a healthy one.
 * - `unavailable`: it could not be read, or its repair could not be written or did not verify;
 *   scrub again later.
 * - `unrecoverable`: it is missing or corrupt and no readable copy is healthy, so nothing was
 *   written. When another copy is `unavailable`, a later scrub may still find a healthy one there.
 */
export type CopyStatus = 'ok' | 'repaired' | 'unavailable' | 'unrecoverable';

export interface CopyReport {
  backend: string;
  status: CopyStatus;
  /** What the scrub found wrong with the copy before any repair. */
  found?: 'missing' | 'corrupt';
  /** Why the copy is `unavailable`. */
  error?: unknown;
}

export interface ScrubResult {
  key: string;
  /** One report per backend, in the order given. */
  copies: CopyReport[];
}

type Inspection = { state: 'healthy' | 'missing' | 'corrupt' } | { state: 'unreadable'; error: unknown };

const matches = (stored: StoredObject, expected: StoredObject) => stored.size === expected.size && stored.sha256 === expected.sha256;

async function digestOf(stream: Readable): Promise<StoredObject> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { size, sha256: hash.digest('hex') };
}

async function inspect(backend: BlobStore, key: string, expected: StoredObject): Promise<Inspection> {
  try {
    return { state: matches(await digestOf(await backend.get(key)), expected) ? 'healthy' : 'corrupt' };
  } catch (error) {
    return error instanceof NotFoundError ? { state: 'missing' } : { state: 'unreadable', error };
  }
}

/** Streams a healthy copy into `target`, trying each source in turn; the error of the last attempt when none verified. */
async function copyFromHealthy(sources: readonly BlobStore[], target: BlobStore, key: string, expected: StoredObject): Promise<{ error: unknown } | null> {
  let failure: unknown;
  for (const source of sources) {
    try {
      const body = await source.get(key);
      // A put that fails before reading would leave the source's stream (and its file) open.
      const stored = await target.put(key, body).finally(() => body.destroy());
      if (matches(stored, expected)) return null;
      failure = new IntegrityError(`the copy written to ${target.name} has ${stored.size} bytes with SHA-256 ${stored.sha256}`);
    } catch (error) {
      failure = error;
    }
  }
  return { error: failure };
}

/**
 * Reads every copy of `key`, checks it against the size and SHA-256 the caller recorded when the
 * object was written, and rewrites each missing or corrupt copy from a healthy one through `put`,
 * verifying the digest the rewrite reports. Never throws for a backend's failure: a backend that is
 * down is reported `unavailable` and left alone, and with no healthy copy nothing is overwritten.
 *
 * The caller must not scrub a key while deleting it: a repair could put back a copy just removed.
 *
 * @example
 * const result = await scrubObject(blobs.backends, file.blobKey, { size: file.size, sha256: file.sha256 });
 * if (result.copies.some((copy) => copy.status === 'unrecoverable')) alert(result);
 */
export async function scrubObject(backends: readonly BlobStore[], key: string, expected: StoredObject): Promise<ScrubResult> {
  checkObjectKey(key);
  const inspections: Inspection[] = [];
  // One copy at a time: a scrub is background work and must not crowd out requests.
  for (const backend of backends) inspections.push(await inspect(backend, key, expected));
  const healthy = backends.filter((_, index) => inspections[index]!.state === 'healthy');
  const copies: CopyReport[] = [];
  for (const [index, backend] of backends.entries()) {
    const inspection = inspections[index]!;
    if (inspection.state === 'healthy') copies.push({ backend: backend.name, status: 'ok' });
    else if (inspection.state === 'unreadable') copies.push({ backend: backend.name, status: 'unavailable', error: inspection.error });
    else if (healthy.length === 0) copies.push({ backend: backend.name, status: 'unrecoverable', found: inspection.state });
    else {
      const failure = await copyFromHealthy(healthy, backend, key, expected);
      copies.push({ backend: backend.name, found: inspection.state, ...(failure ? { status: 'unavailable', error: failure.error } : { status: 'repaired' }) });
    }
  }
  return { key, copies };
}

export interface DeleteReport {
  backend: string;
  status: 'deleted' | 'unavailable';
  error?: unknown;
}

/**
 * Carries out a queued delete: removes `key` from every backend given, reporting each one instead
 * of throwing, so the caller drops the queue entry only when every report says `deleted`.
 */
export async function repairDelete(backends: readonly BlobStore[], key: string): Promise<{ key: string; copies: DeleteReport[] }> {
  checkObjectKey(key);
  const outcomes = await Promise.allSettled(backends.map((backend) => backend.delete(key)));
  const copies = outcomes.map((outcome, index): DeleteReport => {
    const backend = backends[index]!.name;
    return outcome.status === 'fulfilled' ? { backend, status: 'deleted' } : { backend, status: 'unavailable', error: outcome.reason };
  });
  return { key, copies };
}
