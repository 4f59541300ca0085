import { ColumnNode, createQueryId, InsertQueryNode, PrimitiveValueListNode, TableNode, ValuesNode, type Kysely, type KyselyPlugin, type PluginTransformQueryArgs, type PluginTransformResultArgs, type QueryId, type QueryResult, type RootOperationNode, type UnknownRow } from 'kysely';
import type { Tx } from './group-commit.js';
import type { Tables } from './tables.js';

/**
 * The change log holds, for each committed operation, the write statements it executed, as Kysely
 * operation trees with their values bound. Replaying them in order on a copy of the database as it
 * was before reproduces the database exactly, whichever table a feature writes to, and they compile
 * for SQLite or PostgreSQL alike, so a backup of one can be restored into the other.
 *
 * Tables of the deployment's own working state (leases, queues, progress, chain heads) are not
 * journaled: a restore rebuilds or starts them afresh.
 */
export const UNJOURNALED_TABLES: ReadonlySet<string> = new Set([
  'tenant_heads',
  'journal_head',
  'change_log',
  'ship_head',
  'backups',
  'restore_drills',
  'job_runs',
  'job_schedule',
  'outbox',
  'deliveries',
  'delivery_attempts',
  'blob_repairs',
  'signed_url_uses',
  // A purge's record and the certificate keys outlive the tenant: its key cannot seal them, and a
  // restore must not bring a purge back half-done.
  'tenant_purges',
  'certificate_keys',
  // Short-lived copies of data that is journaled already; no backup holds their blobs, so a restore
  // must not bring back rows (and download links) for archives of data as it was before it.
  'exports',
]);

const MUTATING_SQL = /^\s*(insert|update|delete)\b/i;

interface TableNodeLike {
  kind: string;
  table?: { identifier?: { name?: string } };
  node?: TableNodeLike;
}

function tableName(node: TableNodeLike | undefined): string | null {
  if (!node) return null;
  if (node.kind === 'AliasNode') return tableName(node.node);
  return node.table?.identifier?.name ?? null;
}

/** The table a write statement changes; null for a read. Raw SQL names its table in its own text. */
function writtenTable(node: RootOperationNode): string | null {
  switch (node.kind) {
    case 'InsertQueryNode':
      return tableName(node.into as TableNodeLike | undefined);
    case 'UpdateQueryNode':
      return tableName(node.table as TableNodeLike | undefined);
    case 'DeleteQueryNode':
      return tableName(node.from.froms[0] as TableNodeLike | undefined);
    case 'RawNode':
      return MUTATING_SQL.test(node.sqlFragments[0] ?? '') ? '' : null;
    default:
      return null;
  }
}

/**
 * Collects the write statements one operation executes successfully. A statement is kept only once
 * the database has answered it, so a failed one that the operation recovers from is not replayed,
 * and only if it changed a row, so a background sweep that found nothing leaves no entry.
 */
export class StatementRecorder implements KyselyPlugin {
  readonly statements: RootOperationNode[] = [];
  private readonly pending = new WeakMap<QueryId, RootOperationNode>();

  transformQuery({ node, queryId }: PluginTransformQueryArgs): RootOperationNode {
    const table = writtenTable(node);
    if (table !== null && !UNJOURNALED_TABLES.has(table)) this.pending.set(queryId, node);
    return node;
  }

  async transformResult({ result, queryId }: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    const node = this.pending.get(queryId);
    if (node && result.numAffectedRows !== 0n) this.statements.push(node);
    return result;
  }
}

/**
 * JSON, with byte strings and big integers tagged so they come back as they went in (statements and
 * backed-up rows). Tagged by a walk of our own rather than a replacer: JSON.stringify calls
 * Buffer#toJSON (an array of one number per byte) before any replacer sees the value.
 */
export function stringifyTagged(value: unknown): string {
  return JSON.stringify(tag(value));
}

function tag(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return typeof value === 'bigint' ? { $n: value.toString() } : value;
  if (Buffer.isBuffer(value)) return { $b: value.toString('base64') };
  if (Array.isArray(value)) return value.map(tag);
  const { toJSON } = value as { toJSON?: () => unknown };
  if (typeof toJSON === 'function') return toJSON.call(value);
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) if (item !== undefined) out[key] = tag(item);
  return out;
}

/** The inverse of stringifyTagged; a plain parse and one walk, which is faster than a reviver. */
export function parseTagged(text: string): unknown {
  return untag(JSON.parse(text));
}

function untag(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = untag(value[i]);
    return value;
  }
  const record = value as Record<string, unknown>;
  if (typeof record.$b === 'string') return Buffer.from(record.$b, 'base64');
  if (typeof record.$n === 'string') return BigInt(record.$n);
  for (const key of Object.keys(record)) record[key] = untag(record[key]);
  return record;
}

/**
 * A plain insert (one table, named columns, rows of plain values: most of what is journaled) in a
 * compact form, `{"$i": table, "c": columns, "v": rows}`, a third of its operation tree's size;
 * anything else as its tree.
 */
type CompactInsert = { $i: string; c: string[]; v: unknown[][] };
type JournaledStatement = RootOperationNode | CompactInsert;

const INSERT_EXTRAS = ['returning', 'onConflict', 'onDuplicateKey', 'with', 'ignore', 'orAction', 'replace', 'explain', 'defaultValues', 'endModifiers', 'top', 'output'] as const;

function compact(node: RootOperationNode): JournaledStatement {
  if (node.kind !== 'InsertQueryNode' || !node.into || node.into.table.schema || !node.columns || node.values?.kind !== 'ValuesNode') return node;
  if (INSERT_EXTRAS.some((extra) => node[extra] !== undefined && node[extra] !== false)) return node;
  const rows = (node.values as ValuesNode).values;
  if (!rows.every((row) => row.kind === 'PrimitiveValueListNode')) return node;
  return { $i: node.into.table.identifier.name, c: node.columns.map((c) => c.column.name), v: rows.map((row) => [...(row as PrimitiveValueListNode).values]) };
}

function expand(statement: JournaledStatement): RootOperationNode {
  if (!('$i' in statement)) return statement;
  return InsertQueryNode.cloneWith(InsertQueryNode.create(TableNode.create(statement.$i)), {
    columns: statement.c.map((column) => ColumnNode.create(column)),
    values: ValuesNode.create(statement.v.map((row) => PrimitiveValueListNode.create(row))),
  });
}

/** Executes journaled statements (trees or compact inserts), compiled for `db`'s own dialect. */
export async function replayStatements(db: Kysely<Tables>, statements: readonly JournaledStatement[]): Promise<void> {
  const executor = db.getExecutor();
  for (const statement of statements) {
    await executor.executeQuery(executor.compileQuery(expand(statement), createQueryId()));
  }
}

export interface JournalEntry {
  tenantId: string;
  statements: RootOperationNode[];
}

/**
 * Appends a batch's operations to the change log in the batch's own transaction, so an entry exists
 * exactly when its change does. The sequence is one for the whole database: on PostgreSQL the
 * journal head's row lock orders the commits of every instance, so entries become visible in
 * sequence order, without gaps. An operation larger than MAX_ENTRY_BYTES (a tenant restored in
 * place) spans consecutive entries, all but the last marked `continued`. Returns the first and
 * last sequence of each operation.
 */
export async function appendEntries(tx: Tx, entries: readonly JournalEntry[], at: number): Promise<JournalRange[]> {
  const rows: { tenant_id: string; statements: Buffer; continued: number }[] = [];
  const spans: { first: number; last: number }[] = [];
  for (const entry of entries) {
    const firstRow = rows.length;
    for (const part of encodeStatements(entry.statements)) rows.push({ tenant_id: entry.tenantId, statements: part, continued: 1 });
    rows.at(-1)!.continued = 0;
    spans.push({ first: firstRow, last: rows.length - 1 });
  }
  const head = await tx
    .updateTable('journal_head')
    .set((eb) => ({ seq: eb('seq', '+', rows.length) }))
    .where('id', '=', 1)
    .returning('seq')
    .executeTakeFirstOrThrow();
  const first = Number(head.seq) - rows.length + 1;
  const values = rows.map((row, i) => ({ seq: first + i, at, ...row }));
  for (let i = 0; i < values.length; i += INSERT_ROWS) await tx.insertInto('change_log').values(values.slice(i, i + INSERT_ROWS)).execute();
  return spans.map((span) => ({ first: first + span.first, last: first + span.last }));
}

/** The journal sequences one operation's writes took. */
export interface JournalRange {
  first: number;
  last: number;
}

const INSERT_ROWS = 200;
export const MAX_ENTRY_BYTES = 4 * 1024 * 1024;

/** The statements as JSON arrays of at most MAX_ENTRY_BYTES each (a larger statement alone). */
export function encodeStatements(statements: readonly RootOperationNode[]): Buffer[] {
  const parts: Buffer[] = [];
  let current: string[] = [];
  let size = 2;
  for (const statement of statements) {
    const json = stringifyTagged(compact(statement));
    if (current.length > 0 && size + json.length + 1 > MAX_ENTRY_BYTES) {
      parts.push(Buffer.from(`[${current.join(',')}]`));
      current = [];
      size = 2;
    }
    current.push(json);
    size += json.length + 1;
  }
  parts.push(Buffer.from(`[${current.join(',')}]`));
  return parts;
}
