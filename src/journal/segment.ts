import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { RecoveryError } from '../errors.js';

/*
 * A shipped change-log segment, one immutable object in the blob store:
 *
 *   'SRSEG1\n' | header length (u32 BE) | header (JSON) | chunk | chunk | …
 *
 * The header names the contiguous sequence range [first, last] of one timeline, the SHA-256 of the
 * previous segment object (the chain: a missing, added or edited segment breaks it), the segment's
 * system key wrapped by the KMS, and one chunk per tenant with its entries' range, the tenant data
 * key it is sealed under (wrapped by the tenant's KEK, so a purge makes it unreadable) and its
 * SHA-256. The header's MAC, under a key derived from the segment's system key, covers all of it.
 */
const MAGIC = Buffer.from('SRSEG1\n', 'latin1');

export interface ChunkHeader {
  /** A tenant id, or `_system`. */
  tenant: string;
  first: number;
  last: number;
  entries: number;
  /** The tenant data key's id and its wrapped bytes (base64); null when sealed under the segment's system key. */
  keyId: number | null;
  wrappedKey: string | null;
  length: number;
  sha256: string;
}

export interface SegmentHeader {
  format: 1;
  timeline: string;
  first: number;
  last: number;
  firstAt: number;
  lastAt: number;
  /** SHA-256 (hex) of the previous segment of this timeline; 64 zeros for the first. */
  prev: string;
  /** The segment's system key, wrapped by the KMS's recovery key (base64). */
  wrappedKey: string;
  chunks: ChunkHeader[];
  mac: string;
}

export const GENESIS_SEGMENT_HASH = '0'.repeat(64);

/** Object keys sort by sequence: the first sequence, zero-padded. */
export const segmentObjectKey = (timeline: string, first: number) => `journal/${timeline}/${String(first).padStart(16, '0')}`;
export const segmentPrefix = (timeline: string) => `journal/${timeline}/`;

const macOf = (macKey: Buffer, header: Omit<SegmentHeader, 'mac'>) => createHmac('sha256', macKey).update(JSON.stringify(header)).digest('hex');

export const sha256Hex = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

export function encodeSegment(header: Omit<SegmentHeader, 'mac' | 'chunks'>, chunks: { header: Omit<ChunkHeader, 'length' | 'sha256'>; bytes: Buffer }[], macKey: Buffer): Buffer {
  const unsigned = {
    ...header,
    chunks: chunks.map((c) => ({ ...c.header, length: c.bytes.length, sha256: sha256Hex(c.bytes) })),
  };
  const json = Buffer.from(JSON.stringify({ ...unsigned, mac: macOf(macKey, unsigned) }));
  const length = Buffer.allocUnsafe(4);
  length.writeUInt32BE(json.length);
  return Buffer.concat([MAGIC, length, json, ...chunks.map((c) => c.bytes)]);
}

export interface DecodedSegment {
  header: SegmentHeader;
  /** The sealed bytes of each chunk, in header order, each already checked against its SHA-256. */
  chunks: Buffer[];
}

/** Parses a segment and checks its structure and chunk digests; `name` is how errors name it. The MAC is checked by `verifySegmentMac`. */
const failing = (name: string) => (reason: string): never => {
  throw new RecoveryError(`segment ${name}: ${reason}`);
};

/** Bytes before a segment's header: its magic and the header's length. */
export const SEGMENT_PREFIX_LENGTH = MAGIC.length + 4;

/** The length of the header that follows, from a segment's first SEGMENT_PREFIX_LENGTH bytes. */
export function segmentHeaderLength(prefix: Buffer, name: string): number {
  if (prefix.length < SEGMENT_PREFIX_LENGTH || !prefix.subarray(0, MAGIC.length).equals(MAGIC)) failing(name)('not a segment');
  return prefix.readUInt32BE(MAGIC.length);
}

/** Parses a segment's header (the bytes after its prefix); its MAC is not checked here. */
export function parseSegmentHeader(json: Buffer, name: string): SegmentHeader {
  const fail = failing(name);
  let header: SegmentHeader;
  try {
    header = JSON.parse(json.toString('utf8')) as SegmentHeader;
  } catch {
    return fail('unreadable header');
  }
  if (header.format !== 1 || !Array.isArray(header.chunks)) fail('unknown format');
  return header;
}

export function decodeSegment(bytes: Buffer, name: string): DecodedSegment {
  const fail = failing(name);
  const headerLength = segmentHeaderLength(bytes, name);
  const start = SEGMENT_PREFIX_LENGTH;
  if (start + headerLength > bytes.length) fail('truncated header');
  const header = parseSegmentHeader(bytes.subarray(start, start + headerLength), name);
  const chunks: Buffer[] = [];
  let offset = start + headerLength;
  for (const chunk of header.chunks) {
    const body = bytes.subarray(offset, offset + chunk.length);
    if (body.length !== chunk.length) fail(`chunk of ${chunk.tenant} is truncated`);
    if (sha256Hex(body) !== chunk.sha256) fail(`chunk of ${chunk.tenant} does not match its checksum`);
    chunks.push(body);
    offset += chunk.length;
  }
  if (offset !== bytes.length) fail('bytes after the last chunk');
  return { header, chunks };
}

export function verifySegmentMac(segment: DecodedSegment, macKey: Buffer, name: string): void {
  const { mac, ...unsigned } = segment.header;
  const expected = Buffer.from(macOf(macKey, unsigned), 'hex');
  const given = Buffer.from(typeof mac === 'string' ? mac : '', 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new RecoveryError(`segment ${name}: header fails its MAC`);
}
