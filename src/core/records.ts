import { blindIndexToken, canonicalIndexValue } from '../crypto/blind-index.js';
import { encodeAad, openRecord, recordKeyId, sealRecord, type DataKey } from '../crypto/record-cipher.js';
import { recordKeyFor } from '../crypto/record-key.js';
import { BadRequestError, NotFoundError, PayloadTooLargeError, PreconditionFailedError } from '../errors.js';
import { authorize } from '../policy/authorize.js';
import type { Tx } from '../store/db/group-commit.js';
import type { Actor, Core, Principal, RequestMeta } from './context.js';
import { auditInTx, auditRead, sealedTarget } from './audit-events.js';
import { requireSpec, type CollectionSpec } from './collections.js';
import { COLLECTION_NAME, RECORD_ID, checkFormat } from './ids.js';
import { collectionKeys, tenantDataKey, tenantDataKeyById } from './tenant-keys.js';

export type JsonObject = { [key: string]: unknown };

export interface RecordView {
  id: string;
  version: number;
  createdAt: string;
  updatedAt: string;
  data: JsonObject;
}

export interface RecordVersionView {
  version: number;
  op: 'put' | 'delete';
  at: string;
  data: JsonObject | null;
}

export interface Preconditions {
  /** `*` or a version: the write happens only if the record exists at that version. */
  ifMatch?: number | '*' | undefined;
  /** `*`: the write happens only if the record does not exist. */
  ifNoneMatch?: '*' | undefined;
}

interface Address {
  tenantId: string;
  collection: string;
  id: string;
}

/** AAD binds a body to its tenant, collection, record and version: a row moved anywhere fails to open. */
export const bodyAad = (tenantId: string, collection: string, recordKey: Buffer, version: number) =>
  encodeAad(['strongroom/record', tenantId, collection, recordKey, version]);

function validate(address: Address): void {
  checkFormat(address.collection, COLLECTION_NAME, 'collection name');
  checkFormat(address.id, RECORD_ID, 'record id');
}

/** What a record body seals: the record's id, and its data (null in a delete's tombstone). */
export interface Envelope {
  id: string;
  data: JsonObject | null;
}

function seal(key: DataKey, tenantId: string, collection: string, recordKey: Buffer, version: number, envelope: Envelope): Buffer {
  return sealRecord(key, bodyAad(tenantId, collection, recordKey, version), Buffer.from(JSON.stringify(envelope), 'utf8'));
}

export async function openEnvelope(core: Core, caller: Actor, tenantId: string, collection: string, recordKey: Buffer, version: number, body: Buffer): Promise<Envelope> {
  const key = await tenantDataKeyById(core, tenantId, recordKeyId(body), caller);
  return JSON.parse(openRecord(key, bodyAad(tenantId, collection, recordKey, version), body).toString('utf8')) as Envelope;
}

const recordTarget = (key: DataKey, a: Address) => sealedTarget(key, a.tenantId, `record:${a.collection}/${a.id}`);

/** Blind-index tokens of the indexed fields a document holds; non-scalar values are refused. */
function indexTokens(spec: CollectionSpec, fieldKey: (field: string) => Buffer, data: JsonObject) {
  return spec.indexes.flatMap((index) => {
    const value = data[index.field];
    if (value === undefined) return [];
    if (typeof value === 'object' && value !== null) {
      throw new BadRequestError(`indexed field "${index.field}" must hold a string, number, boolean or null`);
    }
    return [{ field: index.field, token: blindIndexToken(fieldKey(index.field), value, index.bits) }];
  });
}

function checkPreconditions(current: { version: number; deleted: number } | undefined, pre: Preconditions): void {
  const live = current && current.deleted === 0 ? current : undefined;
  if (pre.ifNoneMatch === '*' && live) throw new PreconditionFailedError('the record already exists');
  if (pre.ifMatch === undefined) return;
  if (!live) throw new PreconditionFailedError('the record does not exist');
  if (pre.ifMatch !== '*' && pre.ifMatch !== live.version) {
    throw new PreconditionFailedError(`the record is at version ${live.version}, not ${pre.ifMatch}`);
  }
}

async function currentRow(tx: Tx, tenantId: string, collection: string, recordKey: Buffer) {
  return tx
    .selectFrom('records')
    .select(['version', 'deleted', 'created_at'])
    .where('tenant_id', '=', tenantId)
    .where('collection', '=', collection)
    .where('record_key', '=', recordKey)
    .executeTakeFirst();
}

/** Deeper documents would overflow the stack of JSON.stringify and of the response serializer. */
const MAX_DEPTH = 100;

/** Refuses documents nested deeper than `max` levels, without recursion. */
function checkDepth(data: JsonObject, max: number): void {
  const pending: [unknown, number][] = [[data, 1]];
  while (pending.length > 0) {
    const [value, depth] = pending.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (depth > max) throw new BadRequestError(`a record may nest at most ${max} levels`);
    for (const child of Object.values(value)) pending.push([child, depth + 1]);
  }
}

/** Creates or replaces a record. Returns the new version. */
export async function putRecord(
  core: Core,
  principal: Principal,
  meta: RequestMeta,
  address: Address,
  data: JsonObject,
  pre: Preconditions = {},
): Promise<RecordView> {
  authorize(principal, 'records.write', address);
  validate(address);
  const { tenantId, collection, id } = address;
  checkDepth(data, MAX_DEPTH);
  const dataKey = await tenantDataKey(core, tenantId, principal);
  const keys = await collectionKeys(core, tenantId, collection, principal);
  const recordKey = recordKeyFor(keys.idKey, id);
  const plaintext = Buffer.from(JSON.stringify({ id, data } satisfies Envelope), 'utf8');
  if (plaintext.length > core.limits.maxRecordBytes) {
    throw new PayloadTooLargeError(`a record may hold at most ${core.limits.maxRecordBytes} bytes of JSON`);
  }
  return core.committer.submit(tenantId, async (tx, batch) => {
    const spec = await requireSpec(tx, tenantId, collection);
    const tokens = indexTokens(spec, keys.fieldKey, data);
    const current = await currentRow(tx, tenantId, collection, recordKey);
    checkPreconditions(current, pre);
    const now = core.now();
    const version = (current ? Number(current.version) : 0) + 1;
    const body = sealRecord(dataKey, bodyAad(tenantId, collection, recordKey, version), plaintext);
    const createdAt = current && current.deleted === 0 ? Number(current.created_at) : now;
    if (current) {
      await tx
        .updateTable('records')
        .set({ version, body, deleted: 0, created_at: createdAt, updated_at: now })
        .where('tenant_id', '=', tenantId)
        .where('collection', '=', collection)
        .where('record_key', '=', recordKey)
        .execute();
    } else {
      await tx
        .insertInto('records')
        .values({ tenant_id: tenantId, collection, record_key: recordKey, version, body, deleted: 0, created_at: now, updated_at: now })
        .execute();
    }
    await writeIndex(tx, tenantId, collection, recordKey, spec, tokens, Boolean(current));
    await tx
      .insertInto('record_versions')
      .values({ tenant_id: tenantId, collection, record_key: recordKey, version, op: 'put', body, created_at: now })
      .execute();
    await auditInTx(tx, batch, core, principal, meta, {
      tenantId,
      action: 'record.put',
      target: recordTarget(dataKey, address),
      result: 'ok',
    });
    return { id, version, createdAt: new Date(createdAt).toISOString(), updatedAt: new Date(now).toISOString(), data };
  });
}

async function writeIndex(
  tx: Tx,
  tenantId: string,
  collection: string,
  recordKey: Buffer,
  spec: CollectionSpec,
  tokens: { field: string; token: Buffer }[],
  existed: boolean,
): Promise<void> {
  if (spec.indexes.length === 0) return;
  if (existed) {
    await tx
      .deleteFrom('record_index')
      .where('tenant_id', '=', tenantId)
      .where('collection', '=', collection)
      .where('record_key', '=', recordKey)
      .execute();
  }
  if (tokens.length > 0) {
    await tx
      .insertInto('record_index')
      .values(tokens.map((t) => ({ tenant_id: tenantId, collection, record_key: recordKey, field: t.field, token: t.token })))
      .execute();
  }
}

/**
 * Reads a record and audits the read in one group-committed operation: the read sees exactly what
 * is committed with its audit event, on the connection whose cache the writes keep warm.
 */
export async function getRecord(core: Core, principal: Principal, meta: RequestMeta, address: Address): Promise<RecordView> {
  authorize(principal, 'records.read', address);
  validate(address);
  const { tenantId, collection, id } = address;
  const dataKey = await tenantDataKey(core, tenantId, principal);
  const keys = await collectionKeys(core, tenantId, collection, principal);
  const recordKey = recordKeyFor(keys.idKey, id);
  const row = await core.committer.submit(tenantId, async (tx, batch) => {
    const found = await tx
      .selectFrom('records')
      .select(['version', 'body', 'deleted', 'created_at', 'updated_at'])
      .where('tenant_id', '=', tenantId)
      .where('collection', '=', collection)
      .where('record_key', '=', recordKey)
      .executeTakeFirst();
    const live = found && found.deleted === 0 ? found : undefined;
    await auditInTx(tx, batch, core, principal, meta, {
      tenantId,
      action: 'record.get',
      target: recordTarget(dataKey, address),
      result: live ? 'ok' : 'not_found',
    });
    return live;
  });
  if (!row) throw new NotFoundError('record not found');
  const version = Number(row.version);
  const envelope = await openEnvelope(core, principal, tenantId, collection, recordKey, version, row.body);
  return {
    id,
    version,
    createdAt: new Date(Number(row.created_at)).toISOString(),
    updatedAt: new Date(Number(row.updated_at)).toISOString(),
    data: envelope.data ?? {},
  };
}

/** Soft delete: a tombstone version; the history stays readable until retention removes it. */
export async function deleteRecord(core: Core, principal: Principal, meta: RequestMeta, address: Address, pre: Preconditions = {}): Promise<{ version: number }> {
  authorize(principal, 'records.write', address);
  validate(address);
  const { tenantId, collection, id } = address;
  const dataKey = await tenantDataKey(core, tenantId, principal);
  const keys = await collectionKeys(core, tenantId, collection, principal);
  const recordKey = recordKeyFor(keys.idKey, id);
  return core.committer.submit(tenantId, async (tx, batch) => {
    const spec = await requireSpec(tx, tenantId, collection);
    const current = await currentRow(tx, tenantId, collection, recordKey);
    if (!current || current.deleted !== 0) throw new NotFoundError('record not found');
    checkPreconditions(current, pre);
    const now = core.now();
    const version = Number(current.version) + 1;
    const body = seal(dataKey, tenantId, collection, recordKey, version, { id, data: null });
    await tx
      .updateTable('records')
      .set({ version, body, deleted: 1, updated_at: now })
      .where('tenant_id', '=', tenantId)
      .where('collection', '=', collection)
      .where('record_key', '=', recordKey)
      .execute();
    await writeIndex(tx, tenantId, collection, recordKey, spec, [], true);
    await tx
      .insertInto('record_versions')
      .values({ tenant_id: tenantId, collection, record_key: recordKey, version, op: 'delete', body, created_at: now })
      .execute();
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: 'record.delete', target: recordTarget(dataKey, address), result: 'ok' });
    return { version };
  });
}

export interface ListQuery {
  where: Record<string, string>;
  limit?: number | undefined;
  cursor?: string | undefined;
}

const CURSOR = /^[A-Za-z0-9_-]{43}$/;

function decodeCursor(cursor: string | undefined): Buffer | undefined {
  if (cursor === undefined) return undefined;
  if (!CURSOR.test(cursor)) throw new BadRequestError('invalid cursor');
  return Buffer.from(cursor, 'base64url');
}

/** A query value matches a field holding that string, or the JSON scalar it spells (`30`, `true`, `null`). */
function queryValues(raw: string): unknown[] {
  const values: unknown[] = [raw];
  try {
    const parsed: unknown = JSON.parse(raw);
    if (parsed === null || ['number', 'boolean'].includes(typeof parsed)) values.push(parsed);
  } catch {
    // Not JSON: only the string form can match.
  }
  return values;
}

/**
 * Lists records in key order, optionally by equality on indexed fields. Blind indexes are
 * truncated, so candidates are decrypted and compared before they are returned.
 */
export async function listRecords(
  core: Core,
  principal: Principal,
  meta: RequestMeta,
  tenantId: string,
  collection: string,
  query: ListQuery,
): Promise<{ records: RecordView[]; nextCursor: string | null }> {
  authorize(principal, 'records.read', { tenantId });
  checkFormat(collection, COLLECTION_NAME, 'collection name');
  const limit = Math.min(query.limit ?? core.limits.defaultPageSize, core.limits.maxPageSize);
  let after = decodeCursor(query.cursor);
  const spec = await requireSpec(core.db.reader, tenantId, collection);
  const conditions = Object.entries(query.where).map(([field, raw]) => {
    const index = spec.indexes.find((i) => i.field === field);
    if (!index) throw new BadRequestError(`field "${field}" is not indexed in collection "${collection}"`);
    return { index, values: queryValues(raw) };
  });
  const keys = await collectionKeys(core, tenantId, collection, principal);
  const first = conditions[0];
  const firstTokens = first
    ? [...new Map(first.values.map((v) => {
        const t = blindIndexToken(keys.fieldKey(first.index.field), v, first.index.bits);
        return [t.toString('hex'), t] as const;
      })).values()]
    : [];
  const matches = (data: JsonObject) =>
    conditions.every((c) => {
      const value = data[c.index.field];
      if (value === undefined || (typeof value === 'object' && value !== null)) return false;
      const stored = canonicalIndexValue(value);
      return c.values.some((v) => stored.equals(canonicalIndexValue(v)));
    });

  const records: RecordView[] = [];
  let exhausted = false;
  while (records.length <= limit && !exhausted) {
    const batchSize = limit + 1 - records.length;
    let q = core.db.reader
      .selectFrom('records as r')
      .select(['r.record_key', 'r.version', 'r.body', 'r.created_at', 'r.updated_at'])
      .where('r.tenant_id', '=', tenantId)
      .where('r.collection', '=', collection)
      .where('r.deleted', '=', 0);
    if (first) {
      q = q
        .innerJoin('record_index as i', (j) =>
          j.onRef('i.tenant_id', '=', 'r.tenant_id').onRef('i.collection', '=', 'r.collection').onRef('i.record_key', '=', 'r.record_key'),
        )
        .where('i.field', '=', first.index.field)
        .where('i.token', 'in', firstTokens);
    }
    if (after) q = q.where('r.record_key', '>', after);
    const rows = await q.orderBy('r.record_key').limit(batchSize).execute();
    exhausted = rows.length < batchSize;
    for (const row of rows) {
      after = row.record_key;
      const envelope = await openEnvelope(core, principal, tenantId, collection, row.record_key, Number(row.version), row.body);
      const data = envelope.data ?? {};
      if (!matches(data)) continue;
      records.push({
        id: envelope.id,
        version: Number(row.version),
        createdAt: new Date(Number(row.created_at)).toISOString(),
        updatedAt: new Date(Number(row.updated_at)).toISOString(),
        data,
      });
      if (records.length > limit) break;
    }
  }
  const hasMore = records.length > limit;
  const page = records.slice(0, limit);
  const dataKey = await tenantDataKey(core, tenantId, principal);
  await auditRead(core, principal, meta, {
    tenantId,
    action: 'record.list',
    target: sealedTarget(dataKey, tenantId, `collection:${collection} records:${page.length}`),
    result: 'ok',
  });
  const last = page[page.length - 1];
  return {
    records: page,
    nextCursor: hasMore && last ? recordKeyFor(keys.idKey, last.id).toString('base64url') : null,
  };
}

export async function listRecordVersions(
  core: Core,
  principal: Principal,
  meta: RequestMeta,
  address: Address,
): Promise<RecordVersionView[]> {
  authorize(principal, 'records.read', address);
  validate(address);
  const { tenantId, collection } = address;
  const dataKey = await tenantDataKey(core, tenantId, principal);
  const keys = await collectionKeys(core, tenantId, collection, principal);
  const recordKey = recordKeyFor(keys.idKey, address.id);
  const rows = await core.db.reader
    .selectFrom('record_versions')
    .select(['version', 'op', 'body', 'created_at'])
    .where('tenant_id', '=', tenantId)
    .where('collection', '=', collection)
    .where('record_key', '=', recordKey)
    .orderBy('version', 'desc')
    .limit(core.limits.maxPageSize)
    .execute();
  await auditRead(core, principal, meta, { tenantId, action: 'record.versions', target: recordTarget(dataKey, address), result: rows.length ? 'ok' : 'not_found' });
  if (rows.length === 0) throw new NotFoundError('record not found');
  const versions: RecordVersionView[] = [];
  for (const row of rows) {
    const version = Number(row.version);
    const envelope = await openEnvelope(core, principal, tenantId, collection, recordKey, version, row.body);
    versions.push({ version, op: row.op as 'put' | 'delete', at: new Date(Number(row.created_at)).toISOString(), data: envelope.data });
  }
  return versions;
}
