import { createHmac, hkdfSync } from 'node:crypto';
import { BadRequestError, StrongroomError } from '../errors.js';
import { encodeAad } from './aad.js';

/*
 * Blind indexes let equality lookups run on encrypted fields:
 *   token = truncate(HMAC-SHA256(fieldIndexKey, canonical(value)), bits)
 * Truncation is deliberate: many values share each token, so the index leaks less than the data it
 * finds; the database returns a few candidates and the caller filters them after decrypting.
 */

const INDEX_KEY_INFO = 'strongroom/blind-index/v1';
const MIN_ROOT_KEY_LENGTH = 32;
const MIN_EXPECTED_ROWS = 16;
const MAX_BITS = 32;
/** node:crypto's HKDF refuses a longer info. */
const MAX_HKDF_INFO_LENGTH = 1024;
const FIELD_KEY_LENGTH = 32;

/**
 * The HMAC key of one indexed field. The info encodes collection and field with length prefixes,
 * so ('a.b', 'c') and ('a', 'b.c') get unrelated keys, and each tenant's root key gives its own.
 */
export function deriveIndexKey(indexRootKey: Buffer, collection: string, field: string): Buffer {
  if (!Buffer.isBuffer(indexRootKey) || indexRootKey.length < MIN_ROOT_KEY_LENGTH) {
    throw new StrongroomError('internal', 'a blind index root key is at least 32 bytes');
  }
  const info = encodeAad([INDEX_KEY_INFO, collection, field]);
  if (info.length > MAX_HKDF_INFO_LENGTH) {
    throw new BadRequestError('collection and field names are too long to index');
  }
  return Buffer.from(hkdfSync('sha256', indexRootKey, Buffer.alloc(0), info, FIELD_KEY_LENGTH));
}

/**
 * The bytes a blind index hashes: a one-byte type tag, then the value, so `1`, `"1"` and `true`
 * never share a token. Strings are NFC-normalized so that a composed and a decomposed "é" match.
 * Only JSON scalars can be indexed.
 */
export function canonicalIndexValue(value: unknown): Buffer {
  switch (typeof value) {
    case 'string': {
      // A lone surrogate would encode as U+FFFD and collide with it.
      if (/\p{Cs}/u.test(value)) {
        throw new BadRequestError('an indexed string must be valid Unicode');
      }
      const normalized = value.normalize('NFC');
      const out = Buffer.allocUnsafe(1 + Buffer.byteLength(normalized, 'utf8'));
      out[0] = 0x73; // 's'
      out.write(normalized, 1, 'utf8');
      return out;
    }
    case 'number': {
      if (!Number.isFinite(value)) {
        throw new BadRequestError('an indexed number must be finite');
      }
      // String(n) is ECMAScript's shortest round-trip form, so equal numbers give equal bytes;
      // `+ 0` turns -0 into 0, as JSON.stringify does.
      return Buffer.from(`n${String(value + 0)}`, 'latin1');
    }
    case 'boolean':
      return Buffer.from(value ? 'bt' : 'bf', 'latin1');
    case 'object':
      if (value === null) {
        return Buffer.from('z', 'latin1');
      }
      throw new BadRequestError('only strings, numbers, booleans and null can be indexed');
    default:
      throw new BadRequestError('only strings, numbers, booleans and null can be indexed');
  }
}

/** The blind index token of `value`: its HMAC truncated to `bits`, unused low bits of the last byte zeroed. */
export function blindIndexToken(fieldKey: Buffer, value: unknown, bits: number): Buffer {
  assertBits(bits);
  if (!Buffer.isBuffer(fieldKey) || fieldKey.length !== FIELD_KEY_LENGTH) {
    throw new StrongroomError('internal', 'a blind index field key is 32 bytes (see deriveIndexKey)');
  }
  const mac = createHmac('sha256', fieldKey).update(canonicalIndexValue(value)).digest();
  const byteLength = Math.ceil(bits / 8);
  // A copy, not a view: a view would keep the untruncated HMAC reachable through `token.buffer`.
  const token = Buffer.from(mac.subarray(0, byteLength));
  mac.fill(0);
  const spareBits = byteLength * 8 - bits;
  if (spareBits > 0) {
    token[byteLength - 1] = (token[byteLength - 1] as number) & (0xff << spareBits) & 0xff;
  }
  return token;
}

/**
 * Chooses or checks the width of one blind index on a field, following CipherSweet's "Blind Index
 * Planning" (https://ciphersweet.paragonie.com/php/blind-index-planning and its SECURITY.md, "Blind
 * Index Information Leaks"). With R rows and C = R / 2^bits rows expected per token, a safe index has
 * 2 ≤ C < sqrt(R): below 2, tokens are nearly unique and an attacker can link and count equal values;
 * from sqrt(R) up, lookups return too many rows to help. Several indexes on one field add their bits.
 * Without `bits`, the middle of the allowed range is chosen (rounded down, towards more coincidences).
 *
 * @example planBlindIndex({ expectedRows: 1_000_000 }) // { bits: 14 }: 10..18 are allowed
 */
export function planBlindIndex(opts: { bits?: number; expectedRows: number }): { bits: number } {
  const rows = opts.expectedRows;
  if (!Number.isSafeInteger(rows) || rows < MIN_EXPECTED_ROWS) {
    throw new BadRequestError(
      `expectedRows must be an integer of at least ${MIN_EXPECTED_ROWS}: smaller populations cannot be blind-indexed safely`,
    );
  }
  const { min, max } = allowedBits(rows);
  if (opts.bits === undefined) {
    return { bits: Math.floor((min + max) / 2) };
  }
  assertBits(opts.bits);
  if (opts.bits < min || opts.bits > max) {
    throw new BadRequestError(
      `a ${opts.bits}-bit blind index over ${rows} rows is unsafe: rows per token C = R / 2^bits must satisfy 2 <= C < sqrt(R), ` +
        `and here C = ${formatCount(rows / 2 ** opts.bits)}, sqrt(R) = ${formatCount(Math.sqrt(rows))}; for R = ${rows} use ${min} to ${max} bits`,
    );
  }
  return { bits: opts.bits };
}

/**
 * The bit widths b in 1..32 with 2 ≤ R / 2^b < sqrt(R), in exact integer form:
 * 2^(b+1) ≤ R and R < 2^(2b). BigInt keeps 2^(2b) exact up to b = 32.
 */
function allowedBits(rows: number): { min: number; max: number } {
  const r = BigInt(rows);
  let min = 0;
  let max = 0;
  for (let b = 1; b <= MAX_BITS; b++) {
    const enoughCoincidences = 1n << BigInt(b + 1) <= r;
    const usefulSelectivity = r < 1n << BigInt(2 * b);
    if (enoughCoincidences && usefulSelectivity) {
      if (min === 0) min = b;
      max = b;
    }
  }
  // Unreachable for safe integers ≥ 16 (the range holds at least one width), kept as a guard.
  if (min === 0) {
    throw new BadRequestError(`no blind index width is safe for ${rows} rows`);
  }
  return { min, max };
}

function formatCount(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

function assertBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 1 || bits > MAX_BITS) {
    throw new BadRequestError(`blind index bits must be an integer from 1 to ${MAX_BITS}`);
  }
}
