import { randomBytes } from 'node:crypto';
import { BadRequestError } from '../errors.js';

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** Lower-case base32 of fresh random bytes: safe in URLs, key names and file names. */
export function randomId(bytes: number): string {
  return base32(randomBytes(bytes));
}

export function base32(input: Buffer): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of input) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31];
  return out;
}

export const TENANT_ID = /^t_[a-z2-7]{16}$/;
export const COLLECTION_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
/** Record ids are chosen by the tenant; they are stored only as keyed hashes and inside the ciphertext. */
export const RECORD_ID = /^[A-Za-z0-9._~:@-]{1,200}$/;
export const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

export function newTenantId(): string {
  return `t_${randomId(10)}`;
}

export const EXPORT_ID = /^x_[a-z2-7]{16}$/;
export const newExportId = () => `x_${randomId(10)}`;

export function checkFormat(value: string, pattern: RegExp, what: string): string {
  if (!pattern.test(value)) throw new BadRequestError(`invalid ${what}`);
  return value;
}
