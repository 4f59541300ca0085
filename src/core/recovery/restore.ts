import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { createInterface } from 'node:readline';
import { sql, type Kysely } from 'kysely';
import { verifyAuditChain } from '../../audit/verify.js';
import { createDecryptStream } from '../../crypto/stream-cipher.js';
import { RecoveryError } from '../../errors.js';
import type { BackupManifest, BackupPart } from '../../journal/backup-manifest.js';
import { SYSTEM_PART } from '../../journal/backup-manifest.js';
import type { Database } from '../../store/db/open.js';
import { JOURNALED_TABLES } from '../../store/db/journaled-tables.js';
import { parseTagged, replayStatements } from '../../store/db/statement-journal.js';
import type { Tables } from '../../store/db/tables.js';
import { SYSTEM_CHAIN } from '../audit-events.js';
import { partAad } from './backup.js';
import { newTimelineId } from '../../store/db/migrations.js';
import { backupSeq, listBackups, listSegments, openManifest, recordTimeline, shippedEnd, timelineRanges, type RecoverySource } from './catalog.js';
import { CarriedKeys, type SystemKey } from './recovery-keys.js';
import { shippedEntries } from './shipped-entries.js';

/** A point in history: a journal sequence, the last entry at or before a time, or everything shipped. */
export type RestoreTarget = { seq: number } | { time: number } | { latest: true };

export interface RestoreOptions {
  target: RestoreTarget;
  /** The history to restore; by default the one the caller names from the live database or the latest found. */
  timeline: string;
  /** Only this tenant's rows (a tenant restore); every row when absent. */
  tenant?: string;
  /** The restoring machine's clock, which a time target must not be after. */
  now: number;
  onProgress?: (progress: { phase: 'backup' | 'replay'; rows: number; entries: number }) => void;
}

export interface RestoreResult {
  timeline: string;
  /** The backup the restore started from; null when it replayed the log from its first entry. */
  backupId: string | null;
  baseSeq: number;
  /** The sequence and time of the last entry applied: what the database now holds. */
  seq: number;
  at: number | null;
  entries: number;
  rows: number;
  /** Tenants whose audit chains were verified, with their event counts. */
  auditChains: { tenantId: string; events: number }[];
  /** Purged tenants left out: their keys are destroyed, so their copies cannot be read. */
  shredded: string[];
}

const describe = (target: RestoreTarget) => ('seq' in target ? `sequence ${target.seq}` : 'time' in target ? new Date(target.time).toISOString() : 'the latest shipped entry');

interface Base {
  backupId: string;
  timeline: string;
  manifest: BackupManifest;
  key: SystemKey;
}

/** The newest finished backup on the timeline's history that is not after the target; null when none is. */
async function chooseBase(source: RecoverySource, timeline: string, target: RestoreTarget): Promise<Base | null> {
  const candidates: { timeline: string; backupId: string }[] = [];
  for (const range of await timelineRanges(source, timeline)) {
    for (const backupId of await listBackups(source, range.timeline)) {
      const seq = backupSeq(backupId);
      if (seq > range.from && seq <= range.to) candidates.push({ timeline: range.timeline, backupId });
      else if (range.from === 0 && seq === 0) candidates.push({ timeline: range.timeline, backupId });
    }
  }
  candidates.sort((a, b) => backupSeq(a.backupId) - backupSeq(b.backupId));
  for (const candidate of candidates.reverse()) {
    if ('seq' in target && backupSeq(candidate.backupId) > target.seq) continue;
    const { manifest, key } = await openManifest(source, candidate.timeline, candidate.backupId);
    if ('time' in target && manifest.takenAt > target.time) continue;
    return { ...candidate, manifest, key };
  }
  return null;
}

async function insertRows(db: Kysely<Tables>, table: string, rows: Record<string, unknown>[]): Promise<void> {
  if (rows.length > 0) await db.insertInto(table as keyof Tables).values(rows as never).execute();
}

/** Streams one part into `db`, checking the stored bytes against the manifest's digest. */
async function loadPart(source: RecoverySource, db: Kysely<Tables>, manifest: BackupManifest, part: BackupPart, systemKey: SystemKey, keys: CarriedKeys, counted: (rows: number) => void): Promise<boolean> {
  if (part.name !== SYSTEM_PART && (await keys.shredded(part.name))) return false;
  const key =
    part.name === SYSTEM_PART || part.keyId === null || part.wrappedKey === null
      ? systemKey.sealKey
      : await keys.open(part.name, part.keyId, Buffer.from(part.wrappedKey, 'base64'));
  const digest = createHash('sha256');
  let size = 0;
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      digest.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  const stored = await source.blobs.get(part.object).catch((error: unknown) => {
    throw new RecoveryError(`backup part ${part.object}: ${error instanceof Error ? error.message : String(error)}`);
  });
  const plain = stored.pipe(hashing).pipe(createDecryptStream(key, partAad(manifest.backupId, part.name)));
  stored.once('error', (error) => plain.destroy(error));
  hashing.once('error', (error) => plain.destroy(error));
  const pending = new Map<string, Record<string, unknown>[]>();
  const flush = async (table: string) => {
    const rows = pending.get(table) ?? [];
    pending.set(table, []);
    await insertRows(db, table, rows);
    counted(rows.length);
  };
  try {
    for await (const line of createInterface({ input: plain, crlfDelay: Infinity })) {
      if (line === '') continue;
      const { t, r } = parseTagged(line) as { t: string; r: Record<string, unknown> };
      const rows = pending.get(t) ?? [];
      rows.push(r);
      pending.set(t, rows);
      if (rows.length >= 200) await flush(t);
    }
  } catch (error) {
    throw new RecoveryError(`backup part ${part.object}: ${error instanceof Error ? error.message : String(error)}`);
  }
  for (const table of pending.keys()) await flush(table);
  if (size !== part.bytes || digest.digest('hex') !== part.sha256) throw new RecoveryError(`backup part ${part.object}: does not match the manifest's digest`);
  return true;
}

/** Audit chain heads, from the restored events, so new events continue each chain. */
async function rebuildHeads(db: Kysely<Tables>): Promise<void> {
  await db.deleteFrom('tenant_heads').execute();
  await sql`insert into tenant_heads (tenant_id, audit_seq, audit_hash)
    select e.tenant_id, e.seq, e.hash from audit_events e
    where e.seq = (select max(m.seq) from audit_events m where m.tenant_id = e.tenant_id)`.execute(db);
  await sql`insert into tenant_heads (tenant_id, audit_seq, audit_hash) values (${SYSTEM_CHAIN}, 0, ${Buffer.alloc(32)}) on conflict (tenant_id) do nothing`.execute(db);
}

const REPLAY_BATCH = 500;

/** Any row in any restored table: a restore cut short leaves the system's part before any tenant's, so `tenants` alone can be empty. */
async function holdsRows(db: Kysely<Tables>): Promise<boolean> {
  for (const table of JOURNALED_TABLES) {
    if ((await sql`select 1 from ${sql.table(table.name)} limit 1`.execute(db)).rows.length > 0) return true;
  }
  return false;
}

/**
 * Restores into `target`, a freshly migrated, empty database: the newest backup not after the
 * target, then the shipped change log up to it. A target before the oldest restorable point, after
 * the end of the shipped log or after now, or a gap in the log, fails with a RecoveryError; it is
 * never silently replaced by another point. The result is verified: every part against the
 * manifest, every segment against the chain, and every restored audit chain.
 */
export async function restoreInto(source: RecoverySource, target: Database, options: RestoreOptions): Promise<RestoreResult> {
  const { timeline, tenant } = options;
  const db = target.writer;
  if ('time' in options.target && options.target.time > options.now) throw new RecoveryError(`the target ${describe(options.target)} is in the future`);
  if (await holdsRows(db)) throw new RecoveryError('the database to restore into is not empty');
  const keys = new CarriedKeys(source.kms);
  if (tenant !== undefined && (await keys.shredded(tenant))) throw new RecoveryError(`tenant ${tenant} was purged: its key is destroyed, so no copy of its data can be read`);
  const progress = { rows: 0, entries: 0 };
  const shredded = new Set<string>();
  try {
    const base = await chooseBase(source, timeline, options.target);
    const baseSeq = base ? base.manifest.seq : 0;
    const goal = 'seq' in options.target ? options.target.seq : null;
    // Checked before anything is written: a target that cannot be reached fails on an empty database.
    if (!base) {
      const ranges = await timelineRanges(source, timeline);
      const segments = await listSegments(source, ranges[0]!.timeline);
      if (segments[0]?.first !== 1) {
        throw new RecoveryError(`no backup is at or before ${describe(options.target)}, and the log's beginning is no longer retained: it is outside the recovery window`);
      }
    }
    const logEnd = Math.max(baseSeq, await shippedEnd(source, timeline));
    if (goal !== null && goal > logEnd) throw new RecoveryError(`the shipped change log ends at sequence ${logEnd}; ${describe(options.target)} is not in it`);
    if (base) {
      const latestSchema = (await sql<{ name: string }>`select name from kysely_migration order by name desc limit 1`.execute(db)).rows[0]?.name;
      if (base.manifest.schema !== latestSchema) throw new RecoveryError(`backup ${base.backupId} has schema ${base.manifest.schema}; this version restores ${latestSchema}`);
      for (const part of base.manifest.parts) {
        if (tenant !== undefined && part.name !== tenant) continue;
        const loaded = await db.transaction().execute((trx) =>
          loadPart(source, trx, base.manifest, part, base.key, keys, (n) => {
            progress.rows += n;
            options.onProgress?.({ phase: 'backup', ...progress });
          }),
        );
        if (!loaded) shredded.add(part.name);
      }
    }
    let reached = { seq: baseSeq, at: base ? base.manifest.takenAt : null as number | null };
    if (goal !== null && goal < baseSeq) throw new RecoveryError(`the target ${describe(options.target)} is before the oldest restorable point`);
    let batch: { statements: Parameters<typeof replayStatements>[1] }[] = [];
    const apply = async () => {
      const entries = batch;
      batch = [];
      await db.transaction().execute(async (trx) => {
        for (const entry of entries) await replayStatements(trx, entry.statements);
      });
      options.onProgress?.({ phase: 'replay', ...progress });
    };
    const end = { seq: baseSeq };
    if (goal === null || goal > baseSeq) {
      let midOperation = false;
      for await (const entry of shippedEntries(source, timeline, baseSeq, tenant ?? null, keys, end, shredded)) {
        // A target inside an operation that spans several entries takes the whole operation.
        if (!midOperation && goal !== null && entry.seq > goal) break;
        if ('time' in options.target && entry.at > options.target.time) break;
        midOperation = entry.continued;
        batch.push(entry);
        progress.entries += 1;
        reached = { seq: entry.seq, at: entry.at };
        if (batch.length >= REPLAY_BATCH) await apply();
        // Reached: reading on would open the next segment, which need not exist or be intact.
        if (goal !== null && entry.seq >= goal && !midOperation) break;
      }
      await apply();
    }
    if (goal !== null && end.seq < goal) {
      throw new RecoveryError(`the shipped change log ends at sequence ${end.seq}; ${describe(options.target)} is not in it`);
    }
    if (goal !== null) reached.seq = Math.max(goal, reached.seq);
    await rebuildHeads(db);
    const auditChains = await verifyRestored(target, tenant);
    return { timeline, backupId: base?.backupId ?? null, baseSeq, seq: reached.seq, at: reached.at, entries: progress.entries, rows: progress.rows, auditChains, shredded: [...shredded].sort() };
  } finally {
    keys.clear();
  }
}

/** The database's own integrity check, then every restored tenant's audit chain (and the system's). */
async function verifyRestored(target: Database, tenant: string | undefined): Promise<{ tenantId: string; events: number }[]> {
  if (target.dialect === 'sqlite') {
    const check = await sql<{ integrity_check: string }>`pragma integrity_check`.execute(target.writer);
    const problems = check.rows.map((r) => r.integrity_check).filter((r) => r !== 'ok');
    if (problems.length > 0) throw new RecoveryError(`the restored database fails its integrity check: ${problems.slice(0, 3).join('; ')}`);
  }
  const owners = tenant !== undefined ? [tenant] : (await target.writer.selectFrom('tenant_heads').select('tenant_id').orderBy('tenant_id').execute()).map((r) => r.tenant_id);
  const chains: { tenantId: string; events: number }[] = [];
  for (const owner of owners) {
    const result = await verifyAuditChain(target.writer, owner);
    if (!result.ok) throw new RecoveryError(`the restored audit chain of ${owner} does not verify: ${result.reason}`);
    chains.push({ tenantId: owner, events: result.events });
  }
  return chains;
}

/**
 * A whole-database restore: everything up to the target, and then a new timeline, so the restored
 * database ships its own history beside the old one instead of overwriting it.
 */
export async function restoreDatabase(source: RecoverySource, target: Database, options: Omit<RestoreOptions, 'tenant'>): Promise<RestoreResult & { newTimeline: string }> {
  const result = await restoreInto(source, target, options);
  const newTimeline = newTimelineId();
  await recordTimeline(source, newTimeline, result.timeline, result.seq, options.now);
  await target.writer.updateTable('journal_head').set({ timeline: newTimeline, seq: result.seq }).where('id', '=', 1).execute();
  await target.writer.updateTable('ship_head').set({ seq: result.seq, hash: Buffer.alloc(32), shipped_at: 0 }).where('id', '=', 1).execute();
  return { ...result, newTimeline };
}
