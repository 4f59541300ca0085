import { randomFillSync } from 'node:crypto';

/*
 * Each randomFillSync call costs several microseconds on our VMs whatever its size, which would
 * dominate sealing a record. One call fills a pool that hands out each byte exactly once. Only
 * public values (salts) come from here; secret keys are drawn from crypto.randomBytes directly.
 */
const POOL_SIZE = 4096;
const pool = Buffer.alloc(POOL_SIZE);
let poolOffset = POOL_SIZE;

/** Writes `length` fresh CSPRNG bytes into `target` at `offset`. */
export function fillRandom(target: Buffer, offset: number, length: number): void {
  if (length > POOL_SIZE) {
    randomFillSync(target, offset, length);
    return;
  }
  if (poolOffset + length > POOL_SIZE) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  pool.copy(target, offset, poolOffset, poolOffset + length);
  poolOffset += length;
}
