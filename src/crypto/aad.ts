import { BadRequestError } from '../errors.js';

/** Matches a lone UTF-16 surrogate, which UTF-8 encoding would silently turn into U+FFFD. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Encodes parts as associated data without ambiguity: each part is a u32 BE byte length followed by
 * its bytes, so `['ab', 'c']` and `['a', 'bc']` never encode alike.
 * - strings: UTF-8; a lone surrogate is refused because it would encode like U+FFFD and collide.
 * - numbers: 8 bytes, u64 BE; only non-negative safe integers (ids, versions) are accepted.
 * - Buffers: as is.
 * Types are not tagged: callers bind each kind of value to a fixed position (tenant | collection |
 * id | version), so the position says the type.
 *
 * @example encodeAad([tenantId, collection, recordId, version])
 */
export function encodeAad(parts: readonly (string | Buffer | number)[]): Buffer {
  let total = 0;
  for (const part of parts) {
    total += 4 + partLength(part);
  }
  const out = Buffer.allocUnsafe(total);
  let offset = 0;
  for (const part of parts) {
    if (typeof part === 'string') {
      const length = Buffer.byteLength(part, 'utf8');
      offset = out.writeUInt32BE(length, offset);
      offset += out.write(part, offset, 'utf8');
    } else if (typeof part === 'number') {
      offset = out.writeUInt32BE(8, offset);
      offset = out.writeBigUInt64BE(BigInt(part), offset);
    } else {
      offset = out.writeUInt32BE(part.length, offset);
      offset += part.copy(out, offset);
    }
  }
  return out;
}

function partLength(part: string | Buffer | number): number {
  if (typeof part === 'string') {
    if (LONE_SURROGATE.test(part)) {
      throw new BadRequestError('associated data contains a lone UTF-16 surrogate');
    }
    return Buffer.byteLength(part, 'utf8');
  }
  if (typeof part === 'number') {
    if (!Number.isSafeInteger(part) || part < 0) {
      throw new BadRequestError('associated data numbers must be non-negative safe integers');
    }
    return 8;
  }
  if (Buffer.isBuffer(part)) {
    return part.length;
  }
  throw new BadRequestError('associated data parts must be strings, numbers or Buffers');
}
