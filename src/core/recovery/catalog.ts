import { createHmac, timingSafeEqual } from 'node:crypto';
import { Readable } from 'node:stream';
import { NotFoundError, RecoveryError } from '../../errors.js';
import { backupPrefix, manifestObject, parseManifest, verifyManifestMac, type BackupManifest } from '../../journal/backup-manifest.js';
import { parseSegmentHeader, SEGMENT_PREFIX_LENGTH, segmentHeaderLength, segmentPrefix, type SegmentHeader } from '../../journal/segment.js';
import type { Kms } from '../../kms/kms.js';
import type { BlobStore } from '../../store/blob/blob-store.js';
import { backupKeyAad } from './backup.js';
import { newSystemKey, openSystemKey, type SystemKey } from './recovery-keys.js';

/** What a restore needs: the blob store and the KMS, nothing of the database it replaces. */
export interface RecoverySource {
  blobs: BlobStore;
  kms: Kms;
}

/** An object's bytes, or the inclusive range of them. */
export async function readObject(blobs: BlobStore, key: string, range?: { start: number; end: number }): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await blobs.get(key, range)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * A segment's header alone, read by range (its range, times and chunk list), for callers that
 * need no entry of it. Unverified: a restore reads and checks the whole segment.
 */
export async function readSegmentHeader(blobs: BlobStore, key: string): Promise<SegmentHeader> {
  const length = segmentHeaderLength(await readObject(blobs, key, { start: 0, end: SEGMENT_PREFIX_LENGTH - 1 }), key);
  return parseSegmentHeader(await readObject(blobs, key, { start: SEGMENT_PREFIX_LENGTH, end: SEGMENT_PREFIX_LENGTH + length - 1 }), key);
}

async function listAll(blobs: BlobStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of blobs.list(prefix)) keys.push(key);
  return keys;
}

/** First sequences of a timeline's segments, ascending, with their object keys. */
export async function listSegments(source: RecoverySource, timeline: string): Promise<{ key: string; first: number }[]> {
  const prefix = segmentPrefix(timeline);
  return (await listAll(source.blobs, prefix)).map((key) => ({ key, first: Number(key.slice(prefix.length)) })).sort((a, b) => a.first - b.first);
}

/** Ids of a timeline's finished backups (those with a manifest), oldest first. */
export async function listBackups(source: RecoverySource, timeline: string): Promise<string[]> {
  const prefix = backupPrefix(timeline);
  return (await listAll(source.blobs, prefix))
    .filter((key) => key.endsWith('/manifest'))
    .map((key) => key.slice(prefix.length, -'/manifest'.length))
    .sort();
}

export const backupSeq = (backupId: string) => Number(backupId.split('-')[0]);

/** A backup's manifest, its MAC verified with the system key the KMS unwraps. */
export async function openManifest(source: RecoverySource, timeline: string, backupId: string): Promise<{ manifest: BackupManifest; key: SystemKey }> {
  const name = manifestObject(timeline, backupId);
  const manifest = parseManifest(await readObject(source.blobs, name), name);
  if (manifest.timeline !== timeline || manifest.backupId !== backupId) throw new RecoveryError(`backup manifest ${name}: names another backup`);
  const key = await openSystemKey(source.kms, Buffer.from(manifest.wrappedKey, 'base64'), backupKeyAad(timeline, backupId)).catch(() => {
    throw new RecoveryError(`backup manifest ${name}: its key does not open with this KMS`);
  });
  verifyManifestMac(manifest, key.macKey, name);
  return { manifest, key };
}

/*
 * Timelines: a whole-database restore continues history on a new timeline, which records its
 * parent and the sequence it branched at (`timelines/ID`, MAC'd like a manifest). Restoring a
 * timeline follows its ancestors for everything up to its branch point.
 */
interface TimelineRecord {
  timeline: string;
  parent: string;
  parentSeq: number;
  createdAt: number;
  wrappedKey: string;
  mac: string;
}

const timelineObject = (timeline: string) => `timelines/${timeline}`;
const timelineKeyAad = (timeline: string) => ['timeline', timeline];
const timelineMac = (key: Buffer, record: Omit<TimelineRecord, 'mac'>) => createHmac('sha256', key).update(JSON.stringify(record)).digest('hex');

export async function recordTimeline(source: RecoverySource, timeline: string, parent: string, parentSeq: number, createdAt: number): Promise<void> {
  const { key, wrapped } = await newSystemKey(source.kms, timelineKeyAad(timeline));
  const record = { timeline, parent, parentSeq, createdAt, wrappedKey: wrapped.toString('base64') };
  const body = JSON.stringify({ ...record, mac: timelineMac(key.macKey, record) });
  await source.blobs.put(timelineObject(timeline), Readable.from([Buffer.from(body)]));
}

async function readTimeline(source: RecoverySource, timeline: string): Promise<TimelineRecord | null> {
  let bytes: Buffer;
  try {
    bytes = await readObject(source.blobs, timelineObject(timeline));
  } catch (error) {
    if (error instanceof NotFoundError) return null;
    throw error;
  }
  const name = timelineObject(timeline);
  const record = JSON.parse(bytes.toString('utf8')) as TimelineRecord;
  const { mac, ...unsigned } = record;
  const key = await openSystemKey(source.kms, Buffer.from(record.wrappedKey, 'base64'), timelineKeyAad(timeline)).catch(() => {
    throw new RecoveryError(`timeline ${name}: its key does not open with this KMS`);
  });
  const expected = Buffer.from(timelineMac(key.macKey, unsigned), 'hex');
  const given = Buffer.from(String(mac), 'hex');
  if (record.timeline !== timeline || given.length !== expected.length || !timingSafeEqual(given, expected)) throw new RecoveryError(`timeline ${name}: fails its MAC`);
  return record;
}

/** One stretch of history: sequences in (from, to] come from `timeline`. */
export interface TimelineRange {
  timeline: string;
  from: number;
  to: number;
}

/** The ranges of history that make up `timeline`, oldest first. */
export async function timelineRanges(source: RecoverySource, timeline: string): Promise<TimelineRange[]> {
  const ranges: TimelineRange[] = [];
  let current = timeline;
  let to = Number.MAX_SAFE_INTEGER;
  for (let depth = 0; depth < 1000; depth++) {
    const record = await readTimeline(source, current);
    ranges.unshift({ timeline: current, from: record?.parentSeq ?? 0, to });
    if (!record) return ranges;
    to = record.parentSeq;
    current = record.parent;
  }
  throw new RecoveryError(`timeline ${timeline}: its ancestry does not end`);
}

/** The last sequence in the shipped log of `timeline` (its branch point if it has shipped nothing of its own). */
export async function shippedEnd(source: RecoverySource, timeline: string): Promise<number> {
  const ranges = await timelineRanges(source, timeline);
  for (const range of ranges.reverse()) {
    const last = (await listSegments(source, range.timeline)).filter((s) => s.first <= range.to).at(-1);
    if (last) return Math.min(range.to, (await readSegmentHeader(source.blobs, last.key)).last);
    if (range.from > 0) return range.from;
  }
  return 0;
}

/** Every timeline with segments or backups, and the one whose newest segment or backup is most recent: the default to restore. */
export async function latestTimeline(source: RecoverySource): Promise<string> {
  const timelines = new Set<string>();
  for (const prefix of ['journal/', 'backups/']) {
    for (const key of await listAll(source.blobs, prefix)) timelines.add(key.split('/')[1]!);
  }
  let best: { timeline: string; at: number } | null = null;
  for (const timeline of timelines) {
    const at = await newestActivity(source, timeline);
    if (!best || at > best.at) best = { timeline, at };
  }
  if (!best) throw new RecoveryError('the blob store holds no shipped change log and no backup');
  return best.timeline;
}

async function newestActivity(source: RecoverySource, timeline: string): Promise<number> {
  const segments = await listSegments(source, timeline);
  const backups = await listBackups(source, timeline);
  let at = 0;
  if (segments.length > 0) {
    const last = segments.at(-1)!;
    at = (await readSegmentHeader(source.blobs, last.key)).lastAt;
  }
  if (backups.length > 0) at = Math.max(at, (await openManifest(source, timeline, backups.at(-1)!)).manifest.takenAt);
  return at;
}
