import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { sql } from 'kysely';
import { openRecord, recordKeyId, sealRecord } from '../crypto/record-cipher.js';
import { NotFoundError } from '../errors.js';
import { wrappedKeyVersion } from '../kms/kms.js';
import { detailsAad } from './access-requests.js';
import { auditInTx, plainTarget } from './audit-events.js';
import type { Actor, Core, RequestMeta } from './context.js';
import { recordProgress } from './job-progress.js';
import { emailAad } from './members.js';
import { bodyAad } from './records.js';
import { kekName, tenantDataKeyById, wrapAad } from './tenant-keys.js';

const REENCRYPT: Actor = { kind: 'system', name: 'reencrypt' };
const META: RequestMeta = { requestId: '-', sourceIp: '-' };
export const REENCRYPT_JOB = 'reencrypt';

type Row = Record<string, unknown> & { sealed: Buffer };

/**
 * A column sealed under a tenant data key that may be re-encrypted. Audit targets and change-log
 * payloads are sealed too, but they are immutable history (hash-chained, shipped): they keep their
 * key, which is why a rotated-out data key is retired, never deleted, until the tenant is purged.
 */
interface SealedColumn {
  table: 'records' | 'record_versions' | 'members' | 'access_requests';
  column: string;
  /** The primary key after tenant_id, in index order: pages follow it. */
  keys: string[];
  /** Other columns the AAD needs. */
  extra: string[];
  aad(tenantId: string, row: Row): Buffer;
}

const recordAad = (tenantId: string, row: Row) => bodyAad(tenantId, row.collection as string, row.record_key as Buffer, Number(row.version));

const SEALED: SealedColumn[] = [
  { table: 'records', column: 'body', keys: ['collection', 'record_key'], extra: ['version'], aad: recordAad },
  { table: 'record_versions', column: 'body', keys: ['collection', 'record_key', 'version'], extra: [], aad: recordAad },
  { table: 'members', column: 'email_enc', keys: ['member_id'], extra: [], aad: (t, row) => emailAad(t, row.member_id as string) },
  { table: 'access_requests', column: 'details_enc', keys: ['request_id'], extra: [], aad: (t, row) => detailsAad(t, row.request_id as string) },
];

/**
 * Gives the tenant a new data key, wrapped by its KEK's primary version: new data is sealed under it
 * from now on (on other instances within the current-key cache's lifetime), and re-encryption moves
 * existing rows to it. Returns the new key's id.
 */
export async function rotateDataKey(core: Core, tenantId: string, actor: Actor, meta: RequestMeta = META): Promise<number> {
  const top = await core.db.reader
    .selectFrom('data_keys')
    .select((eb) => eb.fn.max('key_id').as('key_id'))
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  if (top?.key_id === undefined || top.key_id === null) throw new NotFoundError('tenant not found');
  const keyId = Number(top.key_id) + 1;
  const key = randomBytes(32);
  let wrapped: Buffer;
  try {
    wrapped = await core.kms.wrapKey(kekName(tenantId), key, wrapAad(tenantId, keyId, 'data'));
  } finally {
    key.fill(0);
  }
  await core.committer.submit(tenantId, async (tx, batch) => {
    // The primary key refuses a second rotation that read the same maximum at the same time.
    await tx.insertInto('data_keys').values({ tenant_id: tenantId, key_id: keyId, purpose: 'data', wrapped, created_at: core.now() }).execute();
    const target = plainTarget(`data-key:${keyId} purpose:data kek-version:${wrappedKeyVersion(wrapped)}`);
    await auditInTx(tx, batch, core, actor, meta, { tenantId, action: 'data-key.rotate', target, result: 'ok' });
  });
  core.currentDataKeys.forget(tenantId);
  return keyId;
}

/** Tenants with a data key that was rotated out and is not yet retired: their rows await re-encryption. */
export async function tenantsToReencrypt(core: Core): Promise<string[]> {
  const rows = await core.db.reader
    .selectFrom('data_keys')
    .select('tenant_id')
    .where('purpose', '=', 'data')
    .where('retired_at', 'is', null)
    .groupBy('tenant_id')
    .having((eb) => eb.fn.countAll(), '>', 1)
    .orderBy('tenant_id')
    .execute();
  return rows.map((r) => r.tenant_id);
}

export interface ReencryptOptions {
  /** Rows per transaction. */
  batchRows: number;
  /** Pause between batches, so that re-encryption leaves room for the tenant's own traffic. */
  pauseMs: number;
  /** Called after each page with the rows scanned so far (of every sealed column) and the total. */
  onProgress?: (progress: { done: number; total: number }) => void | Promise<void>;
}

async function sealedRows(core: Core, tenantId: string): Promise<number> {
  let total = 0;
  for (const s of SEALED) {
    const { rows } = await sql<{ n: number | string }>`select count(*) as n from ${sql.table(s.table)} where tenant_id = ${tenantId} and ${sql.ref(s.column)} is not null`.execute(core.db.reader);
    total += Number(rows[0]?.n ?? 0);
  }
  return total;
}

/** One page of a sealed column, after the primary-key position `after`. */
function page(core: Core, s: SealedColumn, tenantId: string, after: Row | null, limit: number) {
  const keys = sql.join(s.keys.map((k) => sql.ref(k)));
  const columns = sql.join([...s.keys, ...s.extra].map((k) => sql.ref(k)));
  const position = after ? sql`and (${keys}) > (${sql.join(s.keys.map((k) => after[k]))})` : sql``;
  return sql<Row>`select ${columns}, ${sql.ref(s.column)} as sealed from ${sql.table(s.table)}
    where tenant_id = ${tenantId} and ${sql.ref(s.column)} is not null ${position}
    order by ${keys} limit ${limit}`.execute(core.db.reader);
}

/**
 * Re-seals one page's rows that an older data key sealed, in one transaction with one audit event.
 * Each row is replaced only if it still holds what was read (a write meanwhile sealed it anew).
 */
async function reencryptPage(core: Core, s: SealedColumn, tenantId: string, rows: Row[], current: number): Promise<number> {
  const to = await tenantDataKeyById(core, tenantId, current, REENCRYPT);
  const updates: { row: Row; sealed: Buffer }[] = [];
  for (const row of rows) {
    const from = recordKeyId(row.sealed);
    if (from === current) continue;
    const key = await tenantDataKeyById(core, tenantId, from, REENCRYPT);
    const aad = s.aad(tenantId, row);
    updates.push({ row, sealed: sealRecord(to, aad, openRecord(key, aad, row.sealed)) });
  }
  if (updates.length === 0) return 0;
  return core.committer.submit(tenantId, async (tx, batch) => {
    let changed = 0;
    for (const { row, sealed } of updates) {
      const where = sql.join([...s.keys.map((k) => sql`${sql.ref(k)} = ${row[k]}`), sql`${sql.ref(s.column)} = ${row.sealed}`], sql` and `);
      const result = await sql`update ${sql.table(s.table)} set ${sql.ref(s.column)} = ${sealed} where tenant_id = ${tenantId} and ${where}`.execute(tx);
      changed += Number(result.numAffectedRows ?? 0);
    }
    if (changed > 0) {
      const target = plainTarget(`${s.table}.${s.column} rows:${changed} to data-key:${current}`);
      await auditInTx(tx, batch, core, REENCRYPT, META, { tenantId, action: 'data-key.reencrypt', target, result: 'ok' });
    }
    return changed;
  });
}

/**
 * Moves every mutable row of one tenant that an older data key sealed to its current data key,
 * page by page, throttled. Resumable by construction: a row already moved is skipped. The older keys
 * are retired once a whole pass has run after no instance can still be sealing under them.
 * Returns how many rows it re-encrypted.
 */
export async function reencryptTenant(core: Core, tenantId: string, options: ReencryptOptions, progress = { done: 0, total: 0 }): Promise<number> {
  core.currentDataKeys.forget(tenantId);
  const current = await core.currentDataKeys.get(tenantId);
  if (current === null) throw new NotFoundError('tenant not found');
  const passStartedAt = core.now();
  let moved = 0;
  for (const s of SEALED) {
    let after: Row | null = null;
    for (;;) {
      const { rows } = await page(core, s, tenantId, after, options.batchRows);
      if (rows.length === 0) break;
      moved += await reencryptPage(core, s, tenantId, rows, current);
      progress.done += rows.length;
      await options.onProgress?.(progress);
      after = rows[rows.length - 1]!;
      if (rows.length < options.batchRows) break;
      await delay(options.pauseMs);
    }
  }
  await retireIfSafe(core, tenantId, current, passStartedAt);
  return moved;
}

/** Retires the tenant's older data keys if the current one was already visible everywhere when the pass began. */
async function retireIfSafe(core: Core, tenantId: string, current: number, passStartedAt: number): Promise<void> {
  const row = await core.db.reader.selectFrom('data_keys').select('created_at').where('tenant_id', '=', tenantId).where('key_id', '=', current).executeTakeFirstOrThrow();
  if (passStartedAt < Number(row.created_at) + core.currentDataKeys.ttlMs) return;
  await core.committer.submit(tenantId, async (tx, batch) => {
    const retired = await tx
      .updateTable('data_keys')
      .set({ retired_at: core.now() })
      .where('tenant_id', '=', tenantId)
      .where('purpose', '=', 'data')
      .where('key_id', '<', current)
      .where('retired_at', 'is', null)
      .returning('key_id')
      .execute();
    if (retired.length === 0) return;
    const target = plainTarget(`data-key:${retired.map((r) => r.key_id).join(',')} retired; current data-key:${current}`);
    await auditInTx(tx, batch, core, REENCRYPT, META, { tenantId, action: 'data-key.retire', target, result: 'ok' });
  });
}

/**
 * Re-encrypts every tenant that has a rotated-out data key, tenant by tenant, recording progress for
 * `keys status`. Returns how many rows it re-encrypted.
 */
export async function reencryptAll(core: Core, options: ReencryptOptions): Promise<number> {
  const tenants = await tenantsToReencrypt(core);
  if (tenants.length === 0) return 0;
  let total = 0;
  for (const tenantId of tenants) total += await sealedRows(core, tenantId);
  const run = { startedAt: core.now(), total, done: 0, finished: false };
  await recordProgress(core, REENCRYPT_JOB, run);
  let moved = 0;
  const onProgress = async (progress: { done: number; total: number }) => {
    await recordProgress(core, REENCRYPT_JOB, run);
    await options.onProgress?.(progress);
  };
  for (const tenantId of tenants) moved += await reencryptTenant(core, tenantId, { ...options, onProgress }, run);
  run.finished = true;
  await recordProgress(core, REENCRYPT_JOB, run);
  return moved;
}

/** Gives every tenant whose current data key is at least `maxAgeMs` old a new one; returns those tenants. */
export async function rotateDueDataKeys(core: Core, maxAgeMs: number): Promise<string[]> {
  const rows = await core.db.reader
    .selectFrom('data_keys')
    .select(['tenant_id', (eb) => eb.fn.max('created_at').as('newest')])
    .where('purpose', '=', 'data')
    .groupBy('tenant_id')
    .orderBy('tenant_id')
    .execute();
  const due = rows.filter((r) => core.now() - Number(r.newest) >= maxAgeMs).map((r) => r.tenant_id);
  for (const tenantId of due) await rotateDataKey(core, tenantId, { kind: 'system', name: 'rotate-due' });
  return due;
}

export interface DataKeyStatus {
  tenantId: string;
  /** The data key new data is sealed under. */
  current: number;
  /** Rotated out, rows still being moved off them. */
  pending: number[];
  /** Rotated out; only immutable history (audit targets, change log) is still sealed under them. */
  retired: number[];
}

/** For each tenant: its current data key and the rotated-out ones, pending or retired. */
export async function dataKeyStatus(core: Core): Promise<DataKeyStatus[]> {
  const rows = await core.db.reader
    .selectFrom('data_keys')
    .select(['tenant_id', 'key_id', 'retired_at'])
    .where('purpose', '=', 'data')
    .orderBy('tenant_id')
    .orderBy('key_id')
    .execute();
  const byTenant = new Map<string, DataKeyStatus>();
  for (const row of rows) {
    const status = byTenant.get(row.tenant_id) ?? { tenantId: row.tenant_id, current: 0, pending: [], retired: [] };
    // Ordered by key id: the last one seen is the current key.
    status.current = row.key_id;
    if (row.retired_at === null) status.pending.push(row.key_id);
    else status.retired.push(row.key_id);
    byTenant.set(row.tenant_id, status);
  }
  for (const status of byTenant.values()) status.pending = status.pending.filter((id) => id !== status.current);
  return [...byTenant.values()];
}
