import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeAad } from '../../src/crypto/aad.js';
import type { DataKey } from '../../src/crypto/record-cipher.js';
import {
  createDecryptStream,
  createEncryptStream,
  encryptedSize,
  SEGMENT_SIZE,
  segmentOffset,
  STREAM_HEADER_LENGTH,
  type SegmentRange,
} from '../../src/crypto/stream-cipher.js';
import { IntegrityError } from '../../src/errors.js';

const key: DataKey = { id: 1, key: randomBytes(32) };
const aad = encodeAad(['t_test', 'reports/q3.pdf', 1]);

/** Feeds `input` in chunks of the given sizes (cycled), as a network would. */
async function run(transform: Transform, input: Buffer, chunk = 10_000): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunk) parts.push(input.subarray(i, i + chunk));
  const out: Buffer[] = [];
  await pipeline(Readable.from(parts), transform, async (source: AsyncIterable<Buffer>) => {
    for await (const piece of source) out.push(piece);
  });
  return Buffer.concat(out);
}

const encrypt = (plain: Buffer, chunk?: number, withAad = aad) => run(createEncryptStream(key, withAad), plain, chunk);
const decrypt = (sealed: Buffer, chunk?: number, withAad = aad, range?: SegmentRange) => run(createDecryptStream(key, withAad, range), sealed, chunk);
const refused = (promise: Promise<unknown>) => assert.rejects(promise, IntegrityError);

test('round trip at every boundary: empty, one byte, one segment exactly, one over, many; stored size as predicted', async () => {
  for (const size of [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE, 3 * SEGMENT_SIZE + 17]) {
    const plain = randomBytes(size);
    const sealed = await encrypt(plain);
    assert.equal(sealed.length, encryptedSize(size), `size ${size}`);
    assert.deepEqual(await decrypt(sealed), plain, `size ${size}`);
  }
});

test('any chunking of the input and of the ciphertext gives the same plaintext', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 3 * SEGMENT_SIZE + 100 }), fc.integer({ min: 1, max: 80_000 }), fc.integer({ min: 1, max: 80_000 }), async (size, inChunk, outChunk) => {
      const plain = randomBytes(size);
      assert.deepEqual(await decrypt(await encrypt(plain, inChunk), outChunk), plain);
    }),
    { numRuns: 40 },
  );
});

test('a flipped bit anywhere (header, body, tag) is refused', async () => {
  const sealed = await encrypt(randomBytes(2 * SEGMENT_SIZE + 50));
  for (const at of [0, 3, STREAM_HEADER_LENGTH - 1, STREAM_HEADER_LENGTH + 10, segmentOffset(1) - 1, segmentOffset(2) + 20, sealed.length - 1]) {
    const bad = Buffer.from(sealed);
    bad[at]! ^= 0x01;
    await refused(decrypt(bad));
  }
});

test('truncation at a segment boundary, a dropped, reordered, duplicated or appended segment is refused', async () => {
  const sealed = await encrypt(randomBytes(3 * SEGMENT_SIZE + 10));
  const header = sealed.subarray(0, STREAM_HEADER_LENGTH);
  const seg = (i: number) => sealed.subarray(segmentOffset(i), Math.min(segmentOffset(i + 1), sealed.length));
  await refused(decrypt(sealed.subarray(0, segmentOffset(3))));
  await refused(decrypt(sealed.subarray(0, segmentOffset(1))));
  await refused(decrypt(Buffer.concat([header, seg(0), seg(2), seg(3)])));
  await refused(decrypt(Buffer.concat([header, seg(1), seg(0), seg(2), seg(3)])));
  await refused(decrypt(Buffer.concat([header, seg(0), seg(0), seg(1), seg(2), seg(3)])));
  await refused(decrypt(Buffer.concat([sealed, seg(3)])));
  await refused(decrypt(sealed.subarray(0, STREAM_HEADER_LENGTH - 1)));
  await refused(decrypt(sealed.subarray(0, sealed.length - 1)));
});

test('segments spliced from another file under the same key, or a file read under another name or key, are refused', async () => {
  const a = await encrypt(randomBytes(2 * SEGMENT_SIZE + 5));
  const b = await encrypt(randomBytes(2 * SEGMENT_SIZE + 5));
  await refused(decrypt(Buffer.concat([a.subarray(0, segmentOffset(1)), b.subarray(segmentOffset(1))])));
  await refused(decrypt(Buffer.concat([b.subarray(0, STREAM_HEADER_LENGTH), a.subarray(STREAM_HEADER_LENGTH)])));
  await refused(decrypt(a, undefined, encodeAad(['t_test', 'reports/q4.pdf', 1])));
  await refused(decrypt(a, undefined, encodeAad(['t_other', 'reports/q3.pdf', 1])));
  await refused(run(createDecryptStream({ id: 1, key: randomBytes(32) }, aad), a));
  await refused(run(createDecryptStream({ id: 2, key: key.key }, aad), a));
});

test('a range read decrypts only the segments it fetched, and checks where the file and the range end', async () => {
  const plain = randomBytes(4 * SEGMENT_SIZE + 123);
  const sealed = await encrypt(plain);
  const header = sealed.subarray(0, STREAM_HEADER_LENGTH);
  const ranged = (first: number, end: number, data = sealed.subarray(segmentOffset(first), Math.min(segmentOffset(end + 1), sealed.length))) =>
    decrypt(data, 7000, aad, { header, plainSize: plain.length, firstSegment: first, endSegment: end });
  assert.deepEqual(await ranged(1, 2), plain.subarray(SEGMENT_SIZE, 3 * SEGMENT_SIZE));
  assert.deepEqual(await ranged(4, 4), plain.subarray(4 * SEGMENT_SIZE));
  assert.deepEqual(await ranged(0, 4), plain);
  await refused(ranged(1, 2, sealed.subarray(segmentOffset(1), segmentOffset(2))));
  await refused(ranged(2, 2, sealed.subarray(segmentOffset(1), segmentOffset(2))));
  await refused(ranged(3, 4, sealed.subarray(segmentOffset(3), sealed.length - 1)));
});

test('it streams: plaintext comes out of decryption while the input is still being produced', async () => {
  const chunk = randomBytes(1024 * 1024);
  const total = 16;
  let produced = 0;
  let producedAtFirstOutput = -1;
  let decrypted = 0;
  await pipeline(
    Readable.from(
      (function* () {
        for (; produced < total; produced += 1) yield chunk;
      })(),
    ),
    createEncryptStream(key, aad),
    createDecryptStream(key, aad),
    async (source: AsyncIterable<Buffer>) => {
      for await (const piece of source) {
        if (producedAtFirstOutput < 0) producedAtFirstOutput = produced;
        decrypted += piece.length;
      }
    },
  );
  assert.equal(decrypted, total * chunk.length);
  assert.ok(producedAtFirstOutput < total, `first plaintext after ${producedAtFirstOutput} of ${total} input chunks`);
});
