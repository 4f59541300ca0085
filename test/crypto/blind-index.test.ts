import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { BadRequestError } from '../../src/errors.js';
import {
  blindIndexToken,
  canonicalIndexValue,
  deriveIndexKey,
  planBlindIndex,
} from '../../src/crypto/blind-index.js';

describe('planBlindIndex', () => {
  // R = 1,000,000: C = R / 2^bits must be in [2, 1000).
  // bits 9 → C = 1953.1 (too many rows per token); 10 → 976.6 (ok); 18 → 3.81 (ok); 19 → 1.91 (< 2).
  it('allows 10 to 18 bits for a million rows and refuses 9 and 19', () => {
    for (let bits = 10; bits <= 18; bits++) {
      assert.deepEqual(planBlindIndex({ bits, expectedRows: 1_000_000 }), { bits });
    }
    for (const bits of [9, 19]) {
      assert.throws(
        () => planBlindIndex({ bits, expectedRows: 1_000_000 }),
        (error: unknown) =>
          error instanceof BadRequestError && /2 <= C < sqrt\(R\)/.test(error.message) && /10 to 18 bits/.test(error.message),
      );
    }
  });

  it('chooses the middle of the allowed range when bits are not given', () => {
    assert.deepEqual(planBlindIndex({ expectedRows: 1_000_000 }), { bits: 14 });
    // R = 50,000: 2^b ≤ 25,000 → b ≤ 14; 2^b > sqrt(50,000) ≈ 223.6 → b ≥ 8; middle 11.
    assert.deepEqual(planBlindIndex({ expectedRows: 50_000 }), { bits: 11 });
  });

  it('counts C = 2 as safe and C = sqrt(R) as useless, at the exact boundaries', () => {
    // R = 2^20: 19 bits gives C = 2 exactly (allowed); 10 bits gives C = 1024 = sqrt(R) (refused).
    assert.deepEqual(planBlindIndex({ bits: 19, expectedRows: 2 ** 20 }), { bits: 19 });
    assert.throws(() => planBlindIndex({ bits: 20, expectedRows: 2 ** 20 }), BadRequestError);
    assert.throws(() => planBlindIndex({ bits: 10, expectedRows: 2 ** 20 }), /11 to 19 bits/);
    assert.deepEqual(planBlindIndex({ bits: 11, expectedRows: 2 ** 20 }), { bits: 11 });
  });

  it('handles the smallest population, 16 rows: only 3 bits (C = 2 < 4)', () => {
    assert.deepEqual(planBlindIndex({ expectedRows: 16 }), { bits: 3 });
    assert.throws(() => planBlindIndex({ bits: 2, expectedRows: 16 }), /3 to 3 bits/);
    assert.throws(() => planBlindIndex({ bits: 4, expectedRows: 16 }), BadRequestError);
  });

  it('refuses populations under 16 rows, saying they cannot be indexed safely', () => {
    assert.throws(() => planBlindIndex({ expectedRows: 15 }), /cannot be blind-indexed safely/);
    assert.deepEqual(planBlindIndex({ expectedRows: 16 }), { bits: 3 });
  });

  it('refuses a population that is not a whole number', () => {
    assert.throws(() => planBlindIndex({ expectedRows: 1_000_000.5 }), BadRequestError);
    assert.throws(() => planBlindIndex({ expectedRows: Number.NaN }), BadRequestError);
  });

  it('refuses bits outside 1..32 or not integers, and caps huge populations at 32 bits', () => {
    for (const bits of [0, 33, 12.5]) {
      assert.throws(() => planBlindIndex({ bits, expectedRows: 1_000_000 }), /1 to 32/);
    }
    // R = 2^53: allowed 27..32 (2^(2b) > R needs b ≥ 27; the cap is 32).
    assert.deepEqual(planBlindIndex({ expectedRows: 2 ** 53 - 1 }), { bits: 29 });
    assert.deepEqual(planBlindIndex({ bits: 32, expectedRows: 2 ** 53 - 1 }), { bits: 32 });
    assert.throws(() => planBlindIndex({ bits: 26, expectedRows: 2 ** 53 - 1 }), /27 to 32 bits/);
  });
});

describe('blind index tokens', () => {
  const tenantRoot = randomBytes(32);
  const emailKey = deriveIndexKey(tenantRoot, 'contacts', 'email');

  it('are deterministic for one field key and value', () => {
    assert.deepEqual(blindIndexToken(emailKey, 'ada@example.com', 16), blindIndexToken(emailKey, 'ada@example.com', 16));
    assert.deepEqual(deriveIndexKey(tenantRoot, 'contacts', 'email'), emailKey);
  });

  it('differ across fields, collections and tenants (their root keys)', () => {
    const value = 'ada@example.com';
    const tokens = [
      blindIndexToken(emailKey, value, 32),
      blindIndexToken(deriveIndexKey(tenantRoot, 'contacts', 'email2'), value, 32),
      blindIndexToken(deriveIndexKey(tenantRoot, 'leads', 'email'), value, 32),
      blindIndexToken(deriveIndexKey(randomBytes(32), 'contacts', 'email'), value, 32),
      // The info is length-prefixed, so moving a character between collection and field changes the key.
      blindIndexToken(deriveIndexKey(tenantRoot, 'contactse', 'mail'), value, 32),
    ];
    assert.equal(new Set(tokens.map((token) => token.toString('hex'))).size, tokens.length);
  });

  it('keep only the requested bits: 12 bits is 2 bytes whose low 4 bits are zero', () => {
    for (let i = 0; i < 200; i++) {
      const token = blindIndexToken(emailKey, `user${i}@example.com`, 12);
      assert.equal(token.length, 2);
      assert.equal((token[1] as number) & 0x0f, 0);
    }
    const full = blindIndexToken(emailKey, 'x', 32);
    const short = blindIndexToken(emailKey, 'x', 12);
    assert.equal(short[0], full[0]);
    assert.equal(short[1], (full[1] as number) & 0xf0);
    assert.equal(blindIndexToken(emailKey, 'x', 16).length, 2);
    assert.equal(blindIndexToken(emailKey, 'x', 1).length, 1);
    assert.equal((blindIndexToken(emailKey, 'x', 1)[0] as number) & 0x7f, 0);
  });

  it('tell the number 1, the string "1" and true apart', () => {
    const forms = [1, '1', true, null, 'true', 'null'].map((v) => blindIndexToken(emailKey, v, 32).toString('hex'));
    assert.equal(new Set(forms).size, forms.length);
  });

  it('give composed (NFC) and decomposed (NFD) "é" the same token', () => {
    const composed = 'caf\u00e9';
    const decomposed = 'cafe\u0301';
    assert.notEqual(composed, decomposed);
    assert.deepEqual(blindIndexToken(emailKey, composed, 32), blindIndexToken(emailKey, decomposed, 32));
  });

  it('treat -0 and 0, and 1 and 1.0, as the same number', () => {
    assert.deepEqual(canonicalIndexValue(-0), canonicalIndexValue(0));
    assert.deepEqual(canonicalIndexValue(1.0), canonicalIndexValue(1));
    assert.notDeepEqual(canonicalIndexValue(1), canonicalIndexValue(1.5));
  });

  it('refuse objects, arrays, non-finite numbers and other non-JSON values with BadRequestError', () => {
    for (const value of [{}, [], [1], Number.NaN, Infinity, undefined, 1n, Symbol('s'), 'lone \uDC00']) {
      assert.throws(() => canonicalIndexValue(value), BadRequestError);
    }
  });

  it('refuse a root key shorter than 32 bytes', () => {
    assert.throws(() => deriveIndexKey(randomBytes(16), 'contacts', 'email'), /at least 32 bytes/);
  });
});
