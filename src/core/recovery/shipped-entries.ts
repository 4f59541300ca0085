import type { RootOperationNode } from 'kysely';
import { openRecord } from '../../crypto/record-cipher.js';
import { RecoveryError } from '../../errors.js';
import { decodeSegment, GENESIS_SEGMENT_HASH, segmentObjectKey, sha256Hex, verifySegmentMac } from '../../journal/segment.js';
import { parseTagged } from '../../store/db/statement-journal.js';
import { SYSTEM_CHAIN } from '../audit-events.js';
import { listSegments, readObject, timelineRanges, type RecoverySource } from './catalog.js';
import type { CarriedKeys } from './recovery-keys.js';
import { openSystemKey } from './recovery-keys.js';
import { chunkAad, segmentKeyAad } from './ship.js';

export interface ShippedEntry {
  seq: number;
  at: number;
  tenant: string;
  /** The operation goes on in the next entry. */
  continued: boolean;
  statements: RootOperationNode[];
}

/**
 * Every shipped entry after `after`, in sequence order, from the segments of `timeline` and its
 * ancestors; only `tenant`'s when given (the others' chunks are verified, not opened). Each segment
 * is checked before any of its entries is used: its MAC, its digests, that it starts where the one
 * before ended and names that one's hash. A missing, edited or reordered segment stops the read
 * with a RecoveryError that names it. `end` is kept at the last sequence verified so far.
 */
export async function* shippedEntries(
  source: RecoverySource,
  timeline: string,
  after: number,
  tenant: string | null,
  keys: CarriedKeys,
  end: { seq: number } = { seq: after },
  /** Purged tenants whose chunks were left out (their keys are destroyed) are added here. */
  shredded: Set<string> = new Set(),
): AsyncGenerator<ShippedEntry> {
  let expected = after + 1;
  for (const range of await timelineRanges(source, timeline)) {
    if (range.to < expected) continue;
    const segments = await listSegments(source, range.timeline);
    const start = segments.findLastIndex((s) => s.first <= expected);
    if (start === -1) {
      if (segments.length === 0 || range.to === expected - 1) continue;
      throw new RecoveryError(`change log of timeline ${range.timeline} has a gap: entry ${expected} is in no segment (the oldest starts at ${segments[0]!.first})`);
    }
    let prevHash: string | null = null;
    for (let i = start; i < segments.length; i++) {
      const { key: name, first } = segments[i]!;
      if (first > range.to) break;
      const bytes = await readObject(source.blobs, name);
      const segment = decodeSegment(bytes, name);
      const { header } = segment;
      if (header.timeline !== range.timeline || header.first !== first || header.last < header.first) throw new RecoveryError(`segment ${name}: names another range`);
      const systemKey = await openSystemKey(source.kms, Buffer.from(header.wrappedKey, 'base64'), segmentKeyAad(range.timeline, first)).catch(() => {
        throw new RecoveryError(`segment ${name}: its key does not open with this KMS`);
      });
      verifySegmentMac(segment, systemKey.macKey, name);
      // Before the chain: a missing segment also breaks the chain, but the gap says what is missing
      // (segments are contiguous, so the first one missing starts at `expected`).
      if (header.first > expected) {
        throw new RecoveryError(`change log of timeline ${range.timeline} has a gap: entries ${expected} to ${header.first - 1} are missing before segment ${name} (segment ${segmentObjectKey(range.timeline, expected)} is not in the store)`);
      }
      if (prevHash !== null && header.prev !== prevHash) throw new RecoveryError(`segment ${name}: does not continue the chain (the segment before it was changed or replaced)`);
      if (header.first === 1 && header.prev !== GENESIS_SEGMENT_HASH) throw new RecoveryError(`segment ${name}: the first segment of the log names a predecessor`);
      prevHash = sha256Hex(bytes);
      const entries: ShippedEntry[] = [];
      let counted = 0;
      for (const [c, chunk] of header.chunks.entries()) {
        counted += chunk.entries;
        if (tenant !== null && chunk.tenant !== tenant) continue;
        if (chunk.tenant !== SYSTEM_CHAIN && (await keys.shredded(chunk.tenant))) {
          shredded.add(chunk.tenant);
          continue;
        }
        const key =
          chunk.tenant === SYSTEM_CHAIN || chunk.keyId === null || chunk.wrappedKey === null
            ? systemKey.sealKey
            : await keys.open(chunk.tenant, chunk.keyId, Buffer.from(chunk.wrappedKey, 'base64'));
        const plain = openRecord(key, chunkAad(range.timeline, first, chunk.tenant), segment.chunks[c]!);
        for (const e of parseTagged(plain.toString('utf8')) as { seq: number; at: number; c: number; s: RootOperationNode[] }[]) {
          entries.push({ seq: e.seq, at: e.at, tenant: chunk.tenant, continued: e.c === 1, statements: e.s });
        }
      }
      if (counted !== header.last - header.first + 1) throw new RecoveryError(`segment ${name}: its chunks do not hold its whole range`);
      entries.sort((a, b) => a.seq - b.seq);
      // Set before the first yield: a reader that stops within this verified segment still knows the log reaches its end.
      const through = Math.min(header.last, range.to);
      end.seq = through;
      for (const entry of entries) {
        if (entry.seq >= expected && entry.seq <= range.to) yield entry;
      }
      expected = through + 1;
      if (expected > range.to) break;
    }
  }
}
