import { RateLimitedError } from '../errors.js';

interface Window {
  failures: number;
  endsAt: number;
}

/** Past this many tracked keys, expired windows are swept so memory stays bounded under a flood. */
const SWEEP_AT = 50_000;

/**
 * Counts failed authentications in fixed windows per key (a source address, a claimed credential).
 * Once a key reaches the limit, every attempt under it is refused until its window ends, so
 * guessing secrets from one address, or against one credential from many, is slow. Counts live in
 * this process: with several instances the limit applies to each.
 */
export class FailureLimiter {
  private readonly windows = new Map<string, Window>();
  private nextSweepAt = 0;

  constructor(
    private readonly maxFailures: number,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}

  /** Throws RateLimitedError while any of the keys is over its limit. */
  check(keys: string[]): void {
    const now = this.now();
    for (const key of keys) {
      const window = this.windows.get(key);
      if (window && window.endsAt > now && window.failures >= this.maxFailures) {
        throw new RateLimitedError(Math.ceil((window.endsAt - now) / 1000));
      }
    }
  }

  recordFailure(keys: string[]): void {
    const now = this.now();
    // Blocked keys add no entries, so the map holds at most maxFailures entries per live source.
    if (this.windows.size >= SWEEP_AT && now >= this.nextSweepAt) {
      for (const [key, window] of this.windows) if (window.endsAt <= now) this.windows.delete(key);
      this.nextSweepAt = now + this.windowMs;
    }
    for (const key of keys) {
      const window = this.windows.get(key);
      if (window && window.endsAt > now) window.failures += 1;
      else this.windows.set(key, { failures: 1, endsAt: now + this.windowMs });
    }
  }
}
