// The change log's statement encoding: what is journaled compiles, after a round trip through the
// encoding, to exactly the SQL the operation ran, for SQLite and PostgreSQL alike; plain inserts
// take a compact form, anything else its operation tree.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler, SqliteAdapter, SqliteIntrospector, SqliteQueryCompiler, type RootOperationNode } from 'kysely';
import { encodeStatements, parseTagged, replayStatements } from '../../src/store/db/statement-journal.js';
import type { Tables } from '../../src/store/db/tables.js';

/** A Kysely that compiles and records, with no database behind it. */
function recordingDb(dialect: 'sqlite' | 'postgres'): { db: Kysely<Tables>; ran: { sql: string; parameters: readonly unknown[] }[] } {
  const ran: { sql: string; parameters: readonly unknown[] }[] = [];
  const db = new Kysely<Tables>({
    dialect: {
      createAdapter: () => (dialect === 'sqlite' ? new SqliteAdapter() : new PostgresAdapter()),
      createDriver: () =>
        new (class extends DummyDriver {
          override async acquireConnection() {
            return {
              executeQuery: async (query: { sql: string; parameters: readonly unknown[] }) => {
                ran.push({ sql: query.sql, parameters: query.parameters });
                return { rows: [] };
              },
              streamQuery: () => {
                throw new Error('not used');
              },
            };
          }
        })(),
      createIntrospector: (k) => (dialect === 'sqlite' ? new SqliteIntrospector(k) : new PostgresIntrospector(k)),
      createQueryCompiler: () => (dialect === 'sqlite' ? new SqliteQueryCompiler() : new PostgresQueryCompiler()),
    },
  });
  return { db, ran };
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  test(`journaled statements replay as the same SQL on ${dialect}`, async () => {
    const { db, ran } = recordingDb(dialect);
    const row = { tenant_id: 't_aaaaaaaaaaaaaaaa', seq: 7, at: 1_796_000_000_000, actor: 'api-key:k', action: 'record.put', target: Buffer.from([0, 1, 2, 255]), result: 'ok', request_id: 'r', source_ip: '::1', hash: Buffer.alloc(32, 9), prev_hash: Buffer.alloc(32) };
    const statements: RootOperationNode[] = [
      db.insertInto('audit_events').values(row as never).toOperationNode(),
      db.insertInto('audit_events').values([row, { ...row, seq: 8, result: null }] as never).toOperationNode(),
      db.insertInto('tenant_heads').values({ tenant_id: 't', audit_seq: 1, audit_hash: Buffer.alloc(32) }).onConflict((oc) => oc.column('tenant_id').doUpdateSet({ audit_seq: 2 })).toOperationNode(),
      db.updateTable('records').set({ version: 3, deleted: 1 }).where('tenant_id', '=', 't').where('record_key', '=', Buffer.from('k')).toOperationNode(),
      db.deleteFrom('record_index').where('tenant_id', '=', 't').toOperationNode(),
    ];
    const encoded = encodeStatements(statements);
    assert.equal(encoded.length, 1);
    const decoded = parseTagged(encoded[0]!.toString('utf8')) as object[];
    assert.ok('$i' in decoded[0]! && '$i' in decoded[1]!, 'plain inserts are compact');
    assert.equal((decoded[2] as { kind: string }).kind, 'InsertQueryNode', 'an insert with ON CONFLICT keeps its tree');
    const direct = statements.map((node) => db.getExecutor().compileQuery(node, { queryId: 'q' } as never));
    await replayStatements(db, decoded as never);
    assert.deepEqual(
      ran.map((q) => ({ sql: q.sql, parameters: [...q.parameters] })),
      direct.map((q) => ({ sql: q.sql, parameters: [...q.parameters] })),
    );
  });
}
