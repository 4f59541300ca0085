import { PassThrough } from 'node:stream';
import { ConfigError, IntegrityError, NotFoundError, UnavailableError } from '../../errors.js';
import { checkObjectKey, type BlobStore, type StoredObject } from './blob-store.js';
import { fanOut } from './fan-out.js';

/** A copy that a replicated write did not make, for the caller's repair queue. */
export interface ReplicaMiss {
  key: string;
  /** The `name` of the backend that missed the operation. */
  backend: string;
  op: 'put' | 'delete';
  error: unknown;
}

export interface ReplicatedOptions {
  primary: BlobStore;
  /** At least one; every backend needs a distinct `name`, which is how misses and scrubs name it. */
  replicas: BlobStore[];
  /** 'all': a put succeeds only when every copy is stored; 'primary': the primary must succeed, a failed replica is reported for repair. */
  writePolicy: 'all' | 'primary';
  /**
   * Called (and awaited) when a replica missed a put under policy 'primary', or a delete failed on
   * a replica (under either policy); the caller persists it in a repair queue. If it throws, the
   * put or delete fails.
   */
  onReplicaMissed: (miss: ReplicaMiss) => Promise<void>;
}

/** Counters since the store was opened, for metrics. */
export interface ReplicationStats {
  /** Puts acknowledged although a replica missed them. */
  degradedWrites: number;
  /** Deletes that a replica missed. */
  degradedDeletes: number;
  /** Reads (get or head) that the primary could not serve and a replica did. */
  fallbackReads: number;
}

export interface ReplicatedBlobStore extends BlobStore {
  readonly writePolicy: 'all' | 'primary';
  /** The primary first, then the replicas: what `scrubObject` and `repairDelete` take. */
  readonly backends: readonly BlobStore[];
  readonly stats: Readonly<ReplicationStats>;
}

const sameContent = (a: StoredObject, b: StoredObject) => a.size === b.size && a.sha256 === b.sha256;

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Writes every object to a primary and its replicas at once, from the one incoming body, and reads
 * from the primary with a fallback to the replicas. Only the `BlobStore` interface is used, so any
 * mix of drivers can be replicated.
 *
 * A put streams the body to every backend at the pace of the slowest (memory stays flat), checks
 * each copy's size and SHA-256 against the bytes sent (IntegrityError on a mismatch), and throws
 * UnavailableError when the copies its policy requires could not be stored. A backend that stalls
 * without failing stalls the put: drivers bound their own waits.
 *
 * Keys must be write-once (the file layer makes a fresh random key for every object): a put that
 * fails removes the key from every backend, and a queued delete removes it wherever it still is.
 *
 * @example
 * const blobs = openReplicatedBlobStore({
 *   primary: openFsBlobStore('/data/blobs'),
 *   replicas: [openFsBlobStore('/mnt/disk2/blobs')],
 *   writePolicy: 'primary',
 *   onReplicaMissed: (miss) => repairQueue.add(miss),
 * });
 */
export function openReplicatedBlobStore(options: ReplicatedOptions): ReplicatedBlobStore {
  const { primary, replicas, writePolicy, onReplicaMissed } = options;
  const backends: readonly BlobStore[] = [primary, ...replicas];
  if (replicas.length === 0) throw new ConfigError('blob.replicas', 'at least one replica is required');
  if (new Set(backends.map((backend) => backend.name)).size !== backends.length) {
    throw new ConfigError('blob.replicas', 'every blob backend needs a distinct name');
  }
  const stats: ReplicationStats = { degradedWrites: 0, degradedDeletes: 0, fallbackReads: 0 };

  /**
   * Best effort: a copy that cannot be removed now is an orphan under a key nothing refers to,
   * never an acknowledged object. Every backend is asked, not only those that acknowledged, since
   * a backend may commit the object and then fail (e.g. syncing the folder after the rename).
   */
  async function removeEverywhere(key: string): Promise<void> {
    await Promise.allSettled(backends.map((backend) => backend.delete(key)));
  }

  /** A mismatched copy is an integrity failure; any other failure means a backend is unavailable. */
  function putFailure(failed: ReadonlyMap<number, unknown>): Error {
    const mismatch = [...failed.values()].find((error): error is IntegrityError => error instanceof IntegrityError);
    if (mismatch) return mismatch;
    const names = [...failed].map(([index, error]) => `${backends[index]!.name} (${messageOf(error)})`);
    return new UnavailableError(`the object could not be stored on ${names.join(', ')}`);
  }

  /** The first backend's answer that is not "missing", in order; throws when none has it and one could not answer. */
  async function readFirstPresent<T>(read: (backend: BlobStore) => Promise<T | null>): Promise<T | null> {
    const failures: string[] = [];
    for (const [index, backend] of backends.entries()) {
      try {
        const found = await read(backend);
        if (found === null) continue;
        if (index > 0) stats.fallbackReads += 1;
        return found;
      } catch (error) {
        if (!(error instanceof NotFoundError)) failures.push(`${backend.name}: ${messageOf(error)}`);
      }
    }
    // A backend that could not answer may hold the only copy: "missing" would be a guess.
    if (failures.length > 0) throw new UnavailableError(`no blob backend could serve the object (${failures.join('; ')})`);
    return null;
  }

  return {
    name: `replicated(${backends.map((backend) => backend.name).join(', ')})`,
    backends,
    stats,
    writePolicy,
    async put(key, body) {
      checkObjectKey(key);
      const abort = new AbortController();
      // A branch's failure is reported by its backend's put; the stream error itself needs no handler.
      // Each branch buffers up to 1 MiB, so one backend's short stall does not hold back the others.
      const branches = backends.map(() => new PassThrough({ highWaterMark: 1024 * 1024 }).on('error', () => {}));
      // Backends whose own failure failed their copy, as opposed to those stopped because of it.
      const rootFailures = new Set<number>();
      const copies = backends.map((backend, index) => {
        const branch = branches[index]!;
        // Settled either way, the branch is done with: destroying it stops feeding a backend that
        // failed (or returned early), so it cannot hold back the others.
        return backend.put(key, branch).then(
          (stored) => {
            branch.destroy();
            return stored;
          },
          (error: unknown) => {
            branch.destroy();
            if (!abort.signal.aborted) rootFailures.add(index);
            if (index === 0 || writePolicy === 'all') {
              abort.abort();
              for (const other of branches) other.destroy();
            }
            throw error;
          },
        );
      });
      const [sending, ...settled] = await Promise.allSettled([fanOut(body, branches, abort.signal), ...copies]);
      if (sending!.status === 'rejected' && sending!.reason !== abort.signal.reason) {
        // The body failed: each driver already kept nothing of it.
        throw sending!.reason;
      }
      const sent = sending!.status === 'fulfilled' ? sending!.value : undefined;
      const failed = new Map<number, unknown>();
      settled.forEach((copy, index) => {
        if (copy.status === 'rejected') {
          if (rootFailures.has(index)) failed.set(index, copy.reason);
        } else if (sent && !sameContent(copy.value, sent)) {
          const { size, sha256 } = copy.value;
          failed.set(index, new IntegrityError(`${backends[index]!.name} stored ${size} bytes with SHA-256 ${sha256}; ${sent.size} bytes with SHA-256 ${sent.sha256} were sent`));
        }
      });
      if (!sent || failed.has(0) || (writePolicy === 'all' && failed.size > 0)) {
        await removeEverywhere(key);
        throw putFailure(failed);
      }
      try {
        for (const [index, error] of failed) await onReplicaMissed({ key, backend: backends[index]!.name, op: 'put', error });
      } catch (error) {
        // Unrecorded, the missing copy would never be repaired: the write is not acknowledged.
        await removeEverywhere(key);
        throw error;
      }
      if (failed.size > 0) stats.degradedWrites += 1;
      return sent;
    },
    async get(key, range) {
      checkObjectKey(key);
      const found = await readFirstPresent((backend) => backend.get(key, range));
      if (!found) throw new NotFoundError('object not found');
      return found;
    },
    async head(key) {
      checkObjectKey(key);
      return readFirstPresent((backend) => backend.head(key));
    },
    async delete(key) {
      checkObjectKey(key);
      const [first, ...rest] = await Promise.allSettled(backends.map((backend) => backend.delete(key)));
      let missed = false;
      for (const [index, outcome] of rest.entries()) {
        if (outcome.status === 'fulfilled') continue;
        missed = true;
        await onReplicaMissed({ key, backend: replicas[index]!.name, op: 'delete', error: outcome.reason });
      }
      if (missed) stats.degradedDeletes += 1;
      if (first!.status === 'rejected') throw new UnavailableError(`the object could not be deleted on ${primary.name} (${messageOf(first!.reason)})`);
    },
    list: (prefix) => primary.list(prefix),
  };
}
