import { StrongroomError } from '../errors.js';

export interface KeyringOptions<Caller> {
  /** How long an unwrapped data key stays usable without asking the KMS again. */
  ttlMs: number;
  /** Past this many keys, the least recently used one is dropped. */
  maxEntries: number;
  /** Milliseconds, like Date.now; injected by tests. */
  clock?: () => number;
  /** Unwraps a tenant's data key through the KMS and audits that use in the name of `caller`. */
  unwrap: (tenantId: string, keyId: number, caller: Caller) => Promise<Buffer>;
}

interface InFlightUnwrap {
  tenantId: string;
  /** Set right after the entry is registered; see get(). */
  promise: Promise<Buffer> | undefined;
}

interface CachedKey {
  tenantId: string;
  key: Buffer;
  expiresAt: number;
  /** Keys derived from this one (index keys, say), kept and wiped with it. */
  derived?: Map<string, Buffer>;
}

/**
 * The cache of unwrapped data keys in front of the KMS. Concurrent misses for one key share a single
 * unwrap, so a burst of requests after a restart costs one KMS call per key, not one per request.
 *
 * Keys are lent, not copied: use a key synchronously after getting it. clear() and evictTenant()
 * zero-fill the keys they drop (shutdown, crypto-shredding), and sealRecord refuses an all-zero key,
 * so a key held across an await fails loudly rather than encrypting under zeros.
 *
 * @example const key = keyring.getSync(tenant, keyId) ?? (await keyring.get(tenant, keyId, caller));
 */
export class Keyring<Caller> {
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly clock: () => number;
  private readonly unwrap: (tenantId: string, keyId: number, caller: Caller) => Promise<Buffer>;
  /** Map order is recency order: a hit moves the entry to the end, eviction takes from the front. */
  private readonly cached = new Map<string, CachedKey>();
  private readonly pending = new Map<string, InFlightUnwrap>();
  /** Lookups answered from the cache, and those that went to the KMS: the hit rate is a metric. */
  readonly stats = { hits: 0, misses: 0 };

  constructor(options: KeyringOptions<Caller>) {
    if (!(options.ttlMs > 0) || !Number.isInteger(options.maxEntries) || options.maxEntries < 1) {
      throw new StrongroomError('internal', 'a keyring needs ttlMs > 0 and maxEntries ≥ 1');
    }
    this.ttlMs = options.ttlMs;
    this.maxEntries = options.maxEntries;
    this.clock = options.clock ?? Date.now;
    this.unwrap = options.unwrap;
  }

  /** The cached key, or undefined on a miss or expiry; never allocates a promise. */
  getSync(tenantId: string, keyId: number): Buffer | undefined {
    const slot = slotOf(tenantId, keyId);
    const entry = this.cached.get(slot);
    if (entry === undefined) {
      return undefined;
    }
    if (this.clock() >= entry.expiresAt) {
      // Not zero-filled: a caller may still be using the buffer it got before expiry.
      this.cached.delete(slot);
      return undefined;
    }
    this.cached.delete(slot);
    this.cached.set(slot, entry);
    this.stats.hits += 1;
    return entry.key;
  }

  /**
   * A key derived from a cached key, computed once per cache entry and dropped with it; undefined
   * when the key itself is not cached. Lent like the key: use it synchronously.
   */
  derivedSync(tenantId: string, keyId: number, label: string, derive: (key: Buffer) => Buffer): Buffer | undefined {
    const key = this.getSync(tenantId, keyId);
    const entry = key === undefined ? undefined : this.cached.get(slotOf(tenantId, keyId));
    if (entry === undefined) {
      return undefined;
    }
    entry.derived ??= new Map();
    let derived = entry.derived.get(label);
    if (derived === undefined) {
      derived = derive(entry.key);
      entry.derived.set(label, derived);
    }
    return derived;
  }

  /**
   * The key from the cache, or unwrapped through the KMS once however many callers ask at the same
   * time; the unwrap is done (and audited) in the name of the caller that missed first.
   */
  get(tenantId: string, keyId: number, caller: Caller): Promise<Buffer> {
    const hit = this.getSync(tenantId, keyId);
    if (hit !== undefined) {
      return Promise.resolve(hit);
    }
    const slot = slotOf(tenantId, keyId);
    const joined = this.pending.get(slot)?.promise;
    if (joined !== undefined) {
      return joined;
    }
    this.stats.misses += 1;
    // Registered before unwrap starts, so even a synchronous throw finds and removes its own entry.
    const inFlight: InFlightUnwrap = { tenantId, promise: undefined };
    this.pending.set(slot, inFlight);
    const promise = this.unwrapAndCache(slot, inFlight, keyId, caller);
    inFlight.promise = promise;
    return promise;
  }

  /** Drops and zero-fills a tenant's keys (purge, key rotation); an unwrap in flight is not cached. */
  evictTenant(tenantId: string): void {
    for (const [slot, entry] of this.cached) {
      if (entry.tenantId === tenantId) {
        wipe(entry);
        this.cached.delete(slot);
      }
    }
    for (const [slot, inFlight] of this.pending) {
      if (inFlight.tenantId === tenantId) {
        this.pending.delete(slot);
      }
    }
  }

  /** Drops and zero-fills every cached key (shutdown). */
  clear(): void {
    for (const entry of this.cached.values()) {
      wipe(entry);
    }
    this.cached.clear();
    this.pending.clear();
  }

  private async unwrapAndCache(slot: string, inFlight: InFlightUnwrap, keyId: number, caller: Caller): Promise<Buffer> {
    let key: Buffer;
    try {
      key = await this.unwrap(inFlight.tenantId, keyId, caller);
    } catch (error) {
      // Failures are not cached: the next get asks the KMS again.
      this.release(slot, inFlight);
      throw error;
    }
    if (this.release(slot, inFlight)) {
      this.cached.set(slot, { tenantId: inFlight.tenantId, key, expiresAt: this.clock() + this.ttlMs });
      this.evictLeastRecentlyUsed();
    }
    return key;
  }

  /** Ends an unwrap; false if evictTenant/clear dropped it meanwhile, so its key must not be cached. */
  private release(slot: string, inFlight: InFlightUnwrap): boolean {
    if (this.pending.get(slot) !== inFlight) {
      return false;
    }
    this.pending.delete(slot);
    return true;
  }

  private evictLeastRecentlyUsed(): void {
    while (this.cached.size > this.maxEntries) {
      const oldest = this.cached.keys().next();
      if (oldest.done === true) {
        return;
      }
      // Not zero-filled, like expiry: the caller that last used it may still hold it.
      this.cached.delete(oldest.value);
    }
  }
}

function wipe(entry: CachedKey): void {
  entry.key.fill(0);
  entry.derived?.forEach((derived) => derived.fill(0));
}

/** The tenant id cannot end the slot early: the key id after the last NUL is decimal digits only. */
function slotOf(tenantId: string, keyId: number): string {
  return `${tenantId}\u0000${keyId}`;
}
