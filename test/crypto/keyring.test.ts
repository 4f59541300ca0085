import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Keyring } from '../../src/crypto/keyring.js';

interface Harness {
  keyring: Keyring<string>;
  calls: string[];
  advance(ms: number): void;
}

function harness(opts: { ttlMs?: number; maxEntries?: number; unwrap?: (t: string, k: number) => Promise<Buffer> } = {}): Harness {
  let now = 1_000_000;
  const calls: string[] = [];
  const keyring = new Keyring<string>({
    ttlMs: opts.ttlMs ?? 60_000,
    maxEntries: opts.maxEntries ?? 100,
    clock: () => now,
    unwrap: async (tenantId, keyId, caller) => {
      calls.push(`${tenantId}/${keyId} by ${caller}`);
      return opts.unwrap ? opts.unwrap(tenantId, keyId) : randomBytes(32);
    },
  });
  return { keyring, calls, advance: (ms) => (now += ms) };
}

describe('Keyring', () => {
  it('serves a second get from the cache without unwrapping again', async () => {
    const { keyring, calls } = harness();
    const first = await keyring.get('t1', 1, 'caller');
    const second = await keyring.get('t1', 1, 'caller');
    assert.equal(second, first);
    assert.equal(keyring.getSync('t1', 1), first);
    assert.deepEqual(calls, ['t1/1 by caller']);
    assert.deepEqual(keyring.stats, { hits: 2, misses: 1 }, 'the hit rate counts lookups served from the cache against unwraps');
  });

  it('keeps keys apart by tenant and key id', async () => {
    const { keyring, calls } = harness();
    const a = await keyring.get('t1', 1, 'caller');
    const b = await keyring.get('t1', 2, 'caller');
    const c = await keyring.get('t2', 1, 'caller');
    assert.notDeepEqual(a, b);
    assert.notDeepEqual(a, c);
    assert.deepEqual(calls, ['t1/1 by caller', 't1/2 by caller', 't2/1 by caller']);
  });

  it('unwraps again once the TTL has passed, not before', async () => {
    const { keyring, calls, advance } = harness({ ttlMs: 1000 });
    await keyring.get('t1', 1, 'caller');
    advance(999);
    assert.ok(keyring.getSync('t1', 1));
    advance(1);
    assert.equal(keyring.getSync('t1', 1), undefined);
    await keyring.get('t1', 1, 'caller');
    assert.deepEqual(calls, ['t1/1 by caller', 't1/1 by caller']);
  });

  it('coalesces 10 concurrent misses for one key into one unwrap', async () => {
    let release: (key: Buffer) => void = () => undefined;
    const { keyring, calls } = harness({
      unwrap: () => new Promise<Buffer>((resolve) => (release = resolve)),
    });
    const gets = Array.from({ length: 10 }, (_, i) => keyring.get('t1', 1, `caller-${i}`));
    await Promise.resolve();
    const key = randomBytes(32);
    release(key);
    const keys = await Promise.all(gets);
    assert.deepEqual(calls, ['t1/1 by caller-0'], 'one unwrap, in the name of the caller that missed first');
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
    await assert.rejects(keyring.get('t1', 1, 'caller'), /kms down/);
    assert.equal(keyring.getSync('t1', 1), undefined);
    await keyring.get('t1', 1, 'caller');
    assert.equal(calls.length, 2);
  });

  it('recovers from an unwrap that throws synchronously', async () => {
    let thrown = false;
    const keyring = new Keyring<string>({
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
    await assert.rejects(keyring.get('t1', 1, 'caller'), /sync failure/);
    assert.equal((await keyring.get('t1', 1, 'caller')).length, 32);
  });

  it('evicts the least recently used key past maxEntries', async () => {
    const { keyring, calls } = harness({ maxEntries: 2 });
    await keyring.get('t1', 1, 'caller');
    await keyring.get('t2', 1, 'caller');
    keyring.getSync('t1', 1); // t1 is now the most recently used
    await keyring.get('t3', 1, 'caller'); // evicts t2
    assert.ok(keyring.getSync('t1', 1));
    assert.ok(keyring.getSync('t3', 1));
    assert.equal(keyring.getSync('t2', 1), undefined);
    assert.deepEqual(calls, ['t1/1 by caller', 't2/1 by caller', 't3/1 by caller']);
  });

  it('zero-fills every cached key on clear and forgets them', async () => {
    const { keyring, calls } = harness();
    const a = await keyring.get('t1', 1, 'caller');
    const b = await keyring.get('t2', 1, 'caller');
    keyring.clear();
    assert.deepEqual(a, Buffer.alloc(32));
    assert.deepEqual(b, Buffer.alloc(32));
    assert.equal(keyring.getSync('t1', 1), undefined);
    await keyring.get('t1', 1, 'caller');
    assert.equal(calls.length, 3);
  });

  it('evictTenant zero-fills only that tenant\'s keys', async () => {
    const { keyring } = harness();
    const gone1 = await keyring.get('t1', 1, 'caller');
    const gone2 = await keyring.get('t1', 2, 'caller');
    const kept = Buffer.from(await keyring.get('t2', 1, 'caller'));
    keyring.evictTenant('t1');
    assert.deepEqual(gone1, Buffer.alloc(32));
    assert.deepEqual(gone2, Buffer.alloc(32));
    assert.equal(keyring.getSync('t1', 1), undefined);
    assert.deepEqual(keyring.getSync('t2', 1), kept);
  });

  it('does not cache a key whose unwrap was in flight when its tenant was evicted', async () => {
    let release: (key: Buffer) => void = () => undefined;
    const { keyring, calls } = harness({ unwrap: () => new Promise<Buffer>((resolve) => (release = resolve)) });
    const pending = keyring.get('t1', 1, 'caller');
    await Promise.resolve();
    keyring.evictTenant('t1');
    release(randomBytes(32));
    await pending;
    assert.equal(keyring.getSync('t1', 1), undefined);
    assert.deepEqual(calls, ['t1/1 by caller']);
  });
});
