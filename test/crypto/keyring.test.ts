import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Keyring } from '../../src/crypto/keyring.js';

interface Harness {
  keyring: Keyring;
  calls: string[];
  advance(ms: number): void;
}

function harness(opts: { ttlMs?: number; maxEntries?: number; unwrap?: (t: string, k: number) => Promise<Buffer> } = {}): Harness {
  let now = 1_000_000;
  const calls: string[] = [];
  const keyring = new Keyring({
    ttlMs: opts.ttlMs ?? 60_000,
    maxEntries: opts.maxEntries ?? 100,
    clock: () => now,
    unwrap: async (tenantId, keyId) => {
      calls.push(`${tenantId}/${keyId}`);
      return opts.unwrap ? opts.unwrap(tenantId, keyId) : randomBytes(32);
    },
  });
  return { keyring, calls, advance: (ms) => (now += ms) };
}

describe('Keyring', () => {
  it('serves a second get from the cache without unwrapping again', async () => {
    const { keyring, calls } = harness();
    const first = await keyring.get('t1', 1);
    const second = await keyring.get('t1', 1);
    assert.equal(second, first);
    assert.equal(keyring.getSync('t1', 1), first);
    assert.deepEqual(calls, ['t1/1']);
    assert.deepEqual(keyring.stats, { hits: 2, misses: 1 }, 'the hit rate counts lookups served from the cache against unwraps');
  });

  it('keeps keys apart by tenant and key id', async () => {
    const { keyring, calls } = harness();
    const a = await keyring.get('t1', 1);
    const b = await keyring.get('t1', 2);
    const c = await keyring.get('t2', 1);
    assert.notDeepEqual(a, b);
    assert.notDeepEqual(a, c);
    assert.deepEqual(calls, ['t1/1', 't1/2', 't2/1']);
  });

  it('unwraps again once the TTL has passed, not before', async () => {
    const { keyring, calls, advance } = harness({ ttlMs: 1000 });
    await keyring.get('t1', 1);
    advance(999);
    assert.ok(keyring.getSync('t1', 1));
    advance(1);
    assert.equal(keyring.getSync('t1', 1), undefined);
    await keyring.get('t1', 1);
    assert.deepEqual(calls, ['t1/1', 't1/1']);
  });

  it('coalesces 10 concurrent misses for one key into one unwrap', async () => {
    let release: (key: Buffer) => void = () => undefined;
    const { keyring, calls } = harness({
      unwrap: () => new Promise<Buffer>((resolve) => (release = resolve)),
    });
    const gets = Array.from({ length: 10 }, () => keyring.get('t1', 1));
    await Promise.resolve();
    const key = randomBytes(32);
    release(key);
    const keys = await Promise.all(gets);
    assert.deepEqual(calls, ['t1/1']);
    for (const got of keys) assert.equal(got, key);
  });

  it('does not cache a failed unwrap: the next get tries again', async () => {
    let failures = 1;
    const { keyring, calls } = harness({
      unwrap: async () => {
        if (failures-- > 0) throw new Error('kms down');
        return randomBytes(32);
      },
    });
    await assert.rejects(keyring.get('t1', 1), /kms down/);
    assert.equal(keyring.getSync('t1', 1), undefined);
    await keyring.get('t1', 1);
    assert.equal(calls.length, 2);
  });

  it('recovers from an unwrap that throws synchronously', async () => {
    let thrown = false;
    const keyring = new Keyring({
      ttlMs: 1000,
      maxEntries: 10,
      unwrap: (() => {
        if (!thrown) {
          thrown = true;
          throw new Error('sync failure');
        }
        return Promise.resolve(randomBytes(32));
      }) as (t: string, k: number) => Promise<Buffer>,
    });
    await assert.rejects(keyring.get('t1', 1), /sync failure/);
    assert.equal((await keyring.get('t1', 1)).length, 32);
  });

  it('evicts the least recently used key past maxEntries', async () => {
    const { keyring, calls } = harness({ maxEntries: 2 });
    await keyring.get('t1', 1);
    await keyring.get('t2', 1);
    keyring.getSync('t1', 1); // t1 is now the most recently used
    await keyring.get('t3', 1); // evicts t2
    assert.ok(keyring.getSync('t1', 1));
    assert.ok(keyring.getSync('t3', 1));
    assert.equal(keyring.getSync('t2', 1), undefined);
    assert.deepEqual(calls, ['t1/1', 't2/1', 't3/1']);
  });

  it('zero-fills every cached key on clear and forgets them', async () => {
    const { keyring, calls } = harness();
    const a = await keyring.get('t1', 1);
    const b = await keyring.get('t2', 1);
    keyring.clear();
    assert.deepEqual(a, Buffer.alloc(32));
    assert.deepEqual(b, Buffer.alloc(32));
    assert.equal(keyring.getSync('t1', 1), undefined);
    await keyring.get('t1', 1);
    assert.equal(calls.length, 3);
  });

  it('evictTenant zero-fills only that tenant\'s keys', async () => {
    const { keyring } = harness();
    const gone1 = await keyring.get('t1', 1);
    const gone2 = await keyring.get('t1', 2);
    const kept = Buffer.from(await keyring.get('t2', 1));
    keyring.evictTenant('t1');
    assert.deepEqual(gone1, Buffer.alloc(32));
    assert.deepEqual(gone2, Buffer.alloc(32));
    assert.equal(keyring.getSync('t1', 1), undefined);
    assert.deepEqual(keyring.getSync('t2', 1), kept);
  });

  it('does not cache a key whose unwrap was in flight when its tenant was evicted', async () => {
    let release: (key: Buffer) => void = () => undefined;
    const { keyring, calls } = harness({ unwrap: () => new Promise<Buffer>((resolve) => (release = resolve)) });
    const pending = keyring.get('t1', 1);
    await Promise.resolve();
    keyring.evictTenant('t1');
    release(randomBytes(32));
    await pending;
    assert.equal(keyring.getSync('t1', 1), undefined);
    assert.deepEqual(calls, ['t1/1']);
  });
});
