import { createCipheriv, createDecipheriv, hkdfSync, timingSafeEqual } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { IntegrityError } from '../errors.js';
import type { DataKey } from './record-cipher.js';
import { fillRandom } from './random-pool.js';

/*
 * Files are encrypted as a stream of segments (the STREAM construction of Hoang, Reyhanitabar,
 * Rogaway and Vizár, as in Tink's streaming AEAD), so memory stays flat whatever the size:
 *
 *   header:  0x01 (format) | dataKeyId (u32 BE) | salt (16) | commitment (32)
 *   segment: AES-256-GCM(file key, nonce, segment plaintext) | tag (16), SEGMENT_SIZE bytes of
 *            plaintext each, the last one shorter (or empty, for an empty file)
 *   nonce:   prefix (7) | segment index (u32 BE) | 1 for the last segment, else 0
 *
 * HKDF-SHA256(data key, salt, info = 'strongroom/file/v1' | aad) gives the file key, a key
 * commitment stored in the header and the nonce prefix: the aad (tenant | path | version) is bound
 * to every byte, and a header from another file, key or name fails before any segment is read.
 * The index in the nonce catches reordering and splicing; the last-segment flag catches truncation
 * at a segment boundary and appended segments. The header is each segment's associated data.
 */
const FORMAT = 0x01;
const KEY_ID_OFFSET = 1;
const SALT_OFFSET = 5;
const SALT_LENGTH = 16;
const COMMITMENT_OFFSET = SALT_OFFSET + SALT_LENGTH;
const COMMITMENT_LENGTH = 32;
export const STREAM_HEADER_LENGTH = COMMITMENT_OFFSET + COMMITMENT_LENGTH;
const TAG_LENGTH = 16;
const PREFIX_LENGTH = 7;
export const SEGMENT_SIZE = 64 * 1024;
const ENCRYPTED_SEGMENT_SIZE = SEGMENT_SIZE + TAG_LENGTH;
const INFO = Buffer.from('strongroom/file/v1', 'latin1');

/** One message for every failure, so a reader cannot learn which check rejected the input. */
const OPEN_FAILED = 'file ciphertext failed authentication';

interface FileSecrets {
  key: Buffer;
  commitment: Buffer;
  prefix: Buffer;
}

function deriveFileSecrets(dataKey: Buffer, salt: Buffer, aad: Buffer): FileSecrets {
  const derived = Buffer.from(hkdfSync('sha256', dataKey, salt, Buffer.concat([INFO, aad]), 32 + COMMITMENT_LENGTH + PREFIX_LENGTH));
  return { key: derived.subarray(0, 32), commitment: derived.subarray(32, 64), prefix: derived.subarray(64) };
}

function nonce(prefix: Buffer, index: number, last: boolean): Buffer {
  const iv = Buffer.allocUnsafe(12);
  prefix.copy(iv, 0);
  iv.writeUInt32BE(index, PREFIX_LENGTH);
  iv[11] = last ? 1 : 0;
  return iv;
}

/** Segments in a file of `plainSize` bytes: an empty file still has its (empty) last segment. */
export const segmentCount = (plainSize: number) => Math.max(1, Math.ceil(plainSize / SEGMENT_SIZE));

/** The stored size of a file of `plainSize` bytes. */
export const encryptedSize = (plainSize: number) => STREAM_HEADER_LENGTH + plainSize + segmentCount(plainSize) * TAG_LENGTH;

/** Where segment `index` starts in the stored file, for range reads. */
export const segmentOffset = (index: number) => STREAM_HEADER_LENGTH + index * ENCRYPTED_SEGMENT_SIZE;

/**
 * Encrypts a byte stream under a data key, binding `aad`. A segment goes out once the next byte
 * shows it is not the last, so only one segment is ever held.
 */
export function createEncryptStream(dataKey: DataKey, aad: Buffer): Transform {
  const header = Buffer.allocUnsafe(STREAM_HEADER_LENGTH);
  header[0] = FORMAT;
  header.writeUInt32BE(dataKey.id, KEY_ID_OFFSET);
  fillRandom(header, SALT_OFFSET, SALT_LENGTH);
  const secrets = deriveFileSecrets(dataKey.key, header.subarray(SALT_OFFSET, COMMITMENT_OFFSET), aad);
  secrets.commitment.copy(header, COMMITMENT_OFFSET);
  let pending: Buffer[] = [];
  let pendingLength = 0;
  let index = 0;

  const seal = (plaintext: Buffer, last: boolean): Buffer => {
    const cipher = createCipheriv('aes-256-gcm', secrets.key, nonce(secrets.prefix, index, last), { authTagLength: TAG_LENGTH });
    cipher.setAAD(header);
    index += 1;
    return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  };

  return new Transform({
    construct(callback) {
      this.push(header);
      callback();
    },
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      pending.push(chunk);
      pendingLength += chunk.length;
      if (pendingLength > SEGMENT_SIZE) {
        let all = Buffer.concat(pending);
        while (all.length > SEGMENT_SIZE) {
          this.push(seal(all.subarray(0, SEGMENT_SIZE), false));
          all = all.subarray(SEGMENT_SIZE);
        }
        pending = [all];
        pendingLength = all.length;
      }
      callback();
    },
    flush(callback) {
      this.push(seal(Buffer.concat(pending), true));
      secrets.key.fill(0);
      callback();
    },
  });
}

/**
 * For a range read: the stream holds segments `firstSegment` to `endSegment` (without the header,
 * which is given here) of a file of `plainSize` bytes (from trusted metadata), so the reader knows
 * which segment is the file's last and how many to expect.
 */
export interface SegmentRange {
  header: Buffer;
  plainSize: number;
  firstSegment: number;
  endSegment: number;
}

/** The data key id named in a stored file's header; IntegrityError if it is not one. */
export function streamKeyId(header: Buffer): number {
  if (header.length < STREAM_HEADER_LENGTH || header[0] !== FORMAT) throw new IntegrityError(OPEN_FAILED);
  return header.readUInt32BE(KEY_ID_OFFSET);
}

/**
 * Decrypts what createEncryptStream wrote, with the same `aad`. Any edit, truncation, reordering,
 * splice or extension makes the stream fail with IntegrityError, and nothing of the failing
 * segment is released: plaintext goes out only once its segment authenticated.
 */
export function createDecryptStream(dataKey: DataKey, aad: Buffer, range?: SegmentRange): Transform {
  let header: Buffer | null = null;
  let secrets: FileSecrets | null = null;
  let index = range?.firstSegment ?? 0;
  const lastIndex = range ? segmentCount(range.plainSize) - 1 : null;
  let buffered: Buffer = Buffer.alloc(0);

  const begin = (candidate: Buffer) => {
    if (streamKeyId(candidate) !== dataKey.id) throw new IntegrityError(OPEN_FAILED);
    const derived = deriveFileSecrets(dataKey.key, candidate.subarray(SALT_OFFSET, COMMITMENT_OFFSET), aad);
    if (!timingSafeEqual(derived.commitment, candidate.subarray(COMMITMENT_OFFSET, STREAM_HEADER_LENGTH))) {
      derived.key.fill(0);
      throw new IntegrityError(OPEN_FAILED);
    }
    header = candidate;
    secrets = derived;
  };
  if (range) begin(range.header.subarray(0, STREAM_HEADER_LENGTH));

  const open = (segment: Buffer, last: boolean): Buffer => {
    if (segment.length < TAG_LENGTH || (lastIndex !== null && index > lastIndex)) throw new IntegrityError(OPEN_FAILED);
    const decipher = createDecipheriv('aes-256-gcm', secrets!.key, nonce(secrets!.prefix, index, last), { authTagLength: TAG_LENGTH });
    decipher.setAAD(header!);
    decipher.setAuthTag(segment.subarray(segment.length - TAG_LENGTH));
    const plaintext = decipher.update(segment.subarray(0, segment.length - TAG_LENGTH));
    try {
      decipher.final();
    } catch {
      throw new IntegrityError(OPEN_FAILED);
    }
    index += 1;
    return plaintext;
  };

  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        if (!header) {
          if (buffered.length < STREAM_HEADER_LENGTH) return callback();
          begin(Buffer.from(buffered.subarray(0, STREAM_HEADER_LENGTH)));
          buffered = buffered.subarray(STREAM_HEADER_LENGTH);
        }
        // A full segment is known not to be the last only once a byte of the next has arrived.
        while (buffered.length > ENCRYPTED_SEGMENT_SIZE) {
          this.push(open(buffered.subarray(0, ENCRYPTED_SEGMENT_SIZE), false));
          buffered = buffered.subarray(ENCRYPTED_SEGMENT_SIZE);
        }
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    flush(callback) {
      try {
        if (!header) throw new IntegrityError(OPEN_FAILED);
        // A range ends where it was asked to end; only the file's own last segment carries the flag.
        if (range && index !== range.endSegment) throw new IntegrityError(OPEN_FAILED);
        this.push(open(buffered, lastIndex === null || index === lastIndex));
        secrets!.key.fill(0);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}
