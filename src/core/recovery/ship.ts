import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeAad, sealRecord } from '../../crypto/record-cipher.js';
import { RecoveryError } from '../../errors.js';
import { decodeSegment, encodeSegment, segmentObjectKey, sha256Hex, verifySegmentMac, type ChunkHeader } from '../../journal/segment.js';
import { SYSTEM_CHAIN } from '../audit-events.js';
import type { Actor, Core } from '../context.js';
import { readObject } from './catalog.js';
import { newSystemKey, openSystemKey, sealingKeyFor } from './recovery-keys.js';

const SHIPPER: Actor = { kind: 'system', name: 'journal.ship' };

export const chunkAad = (timeline: string, first: number, tenant: string) => encodeAad(['strongroom/segment', timeline, first, tenant]);
export const segmentKeyAad = (timeline: string, first: number) => ['segment', timeline, first];

interface ChangeRow {
  seq: number;
  tenant_id: string;
  at: number;
  statements: Buffer;
  continued: number;
}

export interface ShipResult {
  segments: number;
  entries: number;
  /** The last sequence now in the blob store. */
  shippedSeq: number;
  /** Another shipper held the lease, and this call shipped nothing. */
  busy: boolean;
}

async function shipHead(core: Core) {
  const head = await core.db.reader.selectFrom('ship_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirstOrThrow();
  const journal = await core.db.reader.selectFrom('journal_head').select(['timeline']).where('id', '=', 1).executeTakeFirstOrThrow();
  return { seq: Number(head.seq), hash: head.hash.toString('hex'), timeline: journal.timeline };
}

/** Entries after `after`, in order, up to about `maxBytes` of statements (at least one). */
async function pendingRows(core: Core, after: number, maxBytes: number): Promise<ChangeRow[]> {
  const rows: ChangeRow[] = [];
  let bytes = 0;
  let cursor = after;
  for (;;) {
    const page = await core.db.reader.selectFrom('change_log').selectAll().where('seq', '>', cursor).orderBy('seq').limit(500).execute();
    for (const row of page) {
      const entry = { seq: Number(row.seq), tenant_id: row.tenant_id, at: Number(row.at), statements: row.statements, continued: Number(row.continued) };
      if (rows.length > 0 && bytes + entry.statements.length > maxBytes) return rows;
      rows.push(entry);
      bytes += entry.statements.length;
      cursor = entry.seq;
    }
    if (page.length < 500) return rows;
  }
}

/** A tenant's entries as a JSON array, each statement list embedded as it is stored; `c` marks an operation that goes on in the next entry. */
function chunkPlaintext(rows: readonly ChangeRow[]): Buffer {
  const parts: Buffer[] = [Buffer.from('[')];
  rows.forEach((row, i) => {
    parts.push(Buffer.from(`${i > 0 ? ',' : ''}{"seq":${row.seq},"at":${row.at},"c":${row.continued},"s":`), row.statements, Buffer.from('}'));
  });
  parts.push(Buffer.from(']'));
  return Buffer.concat(parts);
}

async function buildSegment(core: Core, timeline: string, prev: string, rows: readonly ChangeRow[]): Promise<Buffer> {
  const first = rows[0]!.seq;
  const byTenant = new Map<string, ChangeRow[]>();
  for (const row of rows) {
    const list = byTenant.get(row.tenant_id) ?? [];
    list.push(row);
    byTenant.set(row.tenant_id, list);
  }
  const system = await newSystemKey(core.kms, segmentKeyAad(timeline, first));
  const chunks: { header: Omit<ChunkHeader, 'length' | 'sha256'>; bytes: Buffer }[] = [];
  for (const [tenant, list] of byTenant) {
    const { key, keyId, wrappedKey } = await sealingKeyFor(core, tenant, system.key, SHIPPER);
    chunks.push({
      header: { tenant, first: list[0]!.seq, last: list.at(-1)!.seq, entries: list.length, keyId, wrappedKey },
      bytes: sealRecord(key, chunkAad(timeline, first, tenant), chunkPlaintext(list)),
    });
  }
  const last = rows.at(-1)!;
  return encodeSegment(
    { format: 1, timeline, first, last: last.seq, firstAt: rows[0]!.at, lastAt: last.at, prev, wrappedKey: system.wrapped.toString('base64') },
    chunks,
    system.key.macKey,
  );
}

/**
 * Short, and renewed while its shipper lives (as the job runner renews job leases): a shipper
 * killed mid-run blocks the next one for seconds, not for the whole lease, which would hold the
 * change log unshipped (the RPO) long after a restart.
 */
const SHIP_LEASE_MS = 5_000;

/** Takes (or renews) the one shipping lease; false while another shipper holds it. */
async function takeShipLease(core: Core, owner: string): Promise<boolean> {
  return core.committer.submit(SYSTEM_CHAIN, async (tx) => {
    const now = core.now();
    const taken = await tx
      .updateTable('ship_head')
      .set({ lease_owner: owner, lease_until: now + SHIP_LEASE_MS })
      .where('id', '=', 1)
      .where((eb) => eb.or([eb('lease_owner', 'is', null), eb('lease_owner', '=', owner), eb('lease_until', '<', now)]))
      .executeTakeFirst();
    return Number(taken.numUpdatedRows) === 1;
  });
}

/** Renews `owner`'s lease every third of its length until the returned function is called. */
function keepShipLease(core: Core, owner: string): () => void {
  const timer = setInterval(() => {
    void core.committer
      .submit(SYSTEM_CHAIN, (tx) => tx.updateTable('ship_head').set({ lease_until: core.now() + SHIP_LEASE_MS }).where('id', '=', 1).where('lease_owner', '=', owner).execute())
      .catch(() => undefined);
  }, Math.floor(SHIP_LEASE_MS / 3));
  return () => clearInterval(timer);
}

async function releaseShipLease(core: Core, owner: string): Promise<void> {
  await core.committer.submit(SYSTEM_CHAIN, (tx) => tx.updateTable('ship_head').set({ lease_owner: null, lease_until: null }).where('id', '=', 1).where('lease_owner', '=', owner).execute());
}

/**
 * Copies change-log entries not yet shipped to the blob store, in segments of up to `maxBytes`,
 * then records how far it got and removes the shipped entries from the database. One shipper at a
 * time holds the shipping lease (any caller may ship: the job, a restore, the CLI); the others find
 * it held and return `busy`. A segment is immutable: after a crash between its write and that
 * record, the next run finds it, checks that it continues the chain, and adopts it.
 */
export async function shipPending(core: Core, maxBytes = core.recovery.segmentMaxBytes): Promise<ShipResult> {
  const result: ShipResult = { segments: 0, entries: 0, shippedSeq: (await shipHead(core)).seq, busy: false };
  if ((await pendingRows(core, result.shippedSeq, 1)).length === 0) return result;
  // Entries written meanwhile are left to the next call: under a steady load one that waited for
  // none to be pending would never end.
  const goal = Number((await core.db.reader.selectFrom('journal_head').select('seq').where('id', '=', 1).executeTakeFirstOrThrow()).seq);
  const owner = randomUUID();
  if (!(await takeShipLease(core, owner))) return { ...result, busy: true };
  const stopRenewing = keepShipLease(core, owner);
  try {
    for (;;) {
      const head = await shipHead(core);
      result.shippedSeq = head.seq;
      if (head.seq >= goal) return result;
      const rows = await pendingRows(core, head.seq, maxBytes);
      if (rows.length === 0) return result;
      rows.forEach((row, i) => {
        if (row.seq !== head.seq + 1 + i) throw new RecoveryError(`change log has a gap: entry ${head.seq + 1 + i} is missing`);
      });
      const objectKey = segmentObjectKey(head.timeline, rows[0]!.seq);
      let bytes: Buffer;
      let last: number;
      if (await core.blobs.head(objectKey)) {
        bytes = await readObject(core.blobs, objectKey);
        const segment = decodeSegment(bytes, objectKey);
        verifySegmentMac(segment, (await openSystemKey(core.kms, Buffer.from(segment.header.wrappedKey, 'base64'), segmentKeyAad(head.timeline, rows[0]!.seq))).macKey, objectKey);
        if (segment.header.prev !== head.hash) throw new RecoveryError(`segment ${objectKey} does not continue the shipped chain`);
        last = segment.header.last;
      } else {
        bytes = await buildSegment(core, head.timeline, head.hash, rows);
        await core.blobs.put(objectKey, Readable.from([bytes]));
        last = rows.at(-1)!.seq;
      }
      const hash = Buffer.from(sha256Hex(bytes), 'hex');
      await core.committer.submit(SYSTEM_CHAIN, async (tx) => {
        const moved = await tx
          .updateTable('ship_head')
          .set({ seq: last, hash, shipped_at: core.now(), lease_until: core.now() + SHIP_LEASE_MS })
          .where('id', '=', 1)
          .where('seq', '=', head.seq)
          .where('lease_owner', '=', owner)
          .executeTakeFirst();
        if (Number(moved.numUpdatedRows) !== 1) throw new RecoveryError('the shipping lease was lost; another shipper carries on');
        await tx.deleteFrom('change_log').where('seq', '<=', last).execute();
      });
      result.segments += 1;
      result.entries += last - head.seq;
      result.shippedSeq = last;
    }
  } finally {
    stopRenewing();
    await releaseShipLease(core, owner);
  }
}

/** Ships, or waits for the shipper holding the lease, until everything up to `seq` is in the blob store. */
export async function shipThrough(core: Core, seq: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const shipped = await shipPending(core);
    if (shipped.shippedSeq >= seq) return;
    if (Date.now() > deadline) throw new RecoveryError(`the change log is not shipped through sequence ${seq} (shipped: ${shipped.shippedSeq})`);
    await sleep(50);
  }
}

export interface ShippingStatus {
  timeline: string;
  journalSeq: number;
  shippedSeq: number;
  pendingEntries: number;
  /** How long the oldest unshipped entry has waited, in milliseconds; 0 when all are shipped. */
  lagMs: number;
  lastShippedAt: number | null;
}

export async function shippingStatus(core: Core): Promise<ShippingStatus> {
  const head = await shipHead(core);
  const journal = await core.db.reader.selectFrom('journal_head').select('seq').where('id', '=', 1).executeTakeFirstOrThrow();
  const shipped = await core.db.reader.selectFrom('ship_head').select('shipped_at').where('id', '=', 1).executeTakeFirstOrThrow();
  const oldest = await core.db.reader.selectFrom('change_log').select('at').where('seq', '>', head.seq).orderBy('seq').limit(1).executeTakeFirst();
  return {
    timeline: head.timeline,
    journalSeq: Number(journal.seq),
    shippedSeq: head.seq,
    pendingEntries: Number(journal.seq) - head.seq,
    lagMs: oldest ? Math.max(0, core.now() - Number(oldest.at)) : 0,
    lastShippedAt: Number(shipped.shipped_at) || null,
  };
}
