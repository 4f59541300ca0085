import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { CompiledQuery, Kysely, Migrator, PostgresDialect, SqliteDialect, SqliteDriver, type DatabaseConnection, type Driver, type SqliteDatabase, type SqliteDialectConfig } from 'kysely';
import pg from 'pg';
import { ConfigError } from '../../errors.js';
import { migrationsFor } from './migrations.js';
import type { Tables } from './tables.js';

export type DialectName = 'sqlite' | 'postgres';

export interface Database {
  readonly dialect: DialectName;
  /** Every write goes through this handle, inside the group committer's transactions. */
  readonly writer: Kysely<Tables>;
  /** Committed reads; on SQLite a second WAL connection so reads do not queue behind a commit. */
  readonly reader: Kysely<Tables>;
  /**
   * Runs `read` on a connection of its own inside one read-only transaction: everything it reads is
   * the database at one instant, however long it takes, while writes go on (for backups).
   */
  snapshot<T>(read: (db: Kysely<Tables>) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export type DatabaseOptions =
  | { driver: 'sqlite'; file: string }
  | { driver: 'postgres'; url: string; sslMode: 'disable' | 'verify-full'; caFile: string | null; poolSize: number };

const STATEMENT_CACHE_LIMIT = 2000;

/** Kysely prepares every query anew; caching prepared statements by SQL text halves the cost of a write. */
function withStatementCache(db: SQLite.Database): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  return {
    prepare(sqlText: string) {
      let statement = cache.get(sqlText);
      if (!statement) {
        if (cache.size >= STATEMENT_CACHE_LIMIT) cache.clear();
        statement = db.prepare(sqlText);
        cache.set(sqlText, statement);
      }
      return statement;
    },
    close() {
      db.close();
    },
  };
}

/**
 * The writer's transactions begin IMMEDIATE, taking the write lock before their first read. A
 * deferred one that has read fails at its first write, at once and without the busy wait, when
 * another process (a CLI command beside the server) committed in between; an immediate one waits.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class WriterSqliteDialect extends SqliteDialect {
  constructor(private readonly writerConfig: SqliteDialectConfig) {
    super(writerConfig);
  }

  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.writerConfig);
  }
}

function openSqlite(file: string): Database {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const writer = new SQLite(file);
  chmodSync(file, 0o600);
  writer.pragma('journal_mode = WAL');
  // FULL: the WAL is fsync'd at every commit, so an acknowledged write survives power loss.
  writer.pragma('synchronous = FULL');
  writer.pragma('busy_timeout = 5000');
  // Savepoints keep statement journals; in memory they cost no file writes per operation.
  writer.pragma('temp_store = MEMORY');
  const reader = new SQLite(file);
  reader.pragma('busy_timeout = 5000');
  reader.pragma('query_only = ON');
  const writerDb = new Kysely<Tables>({ dialect: new WriterSqliteDialect({ database: withStatementCache(writer) }) });
  const readerDb = new Kysely<Tables>({ dialect: new SqliteDialect({ database: withStatementCache(reader) }) });
  return {
    dialect: 'sqlite',
    writer: writerDb,
    reader: readerDb,
    async snapshot(read) {
      const connection = new SQLite(file, { readonly: true });
      connection.pragma('busy_timeout = 5000');
      const db = new Kysely<Tables>({ dialect: new SqliteDialect({ database: connection }) });
      try {
        // WAL: the first read of a transaction fixes the snapshot it sees until it ends.
        return await db.transaction().execute(read);
      } finally {
        await db.destroy();
      }
    },
    async close() {
      await readerDb.destroy();
      await writerDb.destroy();
    },
  };
}

const INT8_OID = 20;

function openPostgres(opts: Extract<DatabaseOptions, { driver: 'postgres' }>): Database {
  let ssl: pg.PoolConfig['ssl'] = false;
  if (opts.sslMode === 'verify-full') {
    // Node's TLS verifies the chain and the host name: the equivalent of libpq's verify-full.
    ssl = { rejectUnauthorized: true, ...(opts.caFile ? { ca: readFileSync(opts.caFile, 'utf8') } : {}) };
  }
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize,
    ssl,
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // An idle connection the server drops (restart, failover) is discarded by the pool; without a
  // listener its 'error' event would crash the process. Queries in flight fail on their own.
  pool.on('error', () => undefined);
  const db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
  return {
    dialect: 'postgres',
    writer: db,
    reader: db,
    snapshot: (read) =>
      db
        .transaction()
        .setIsolationLevel('repeatable read')
        .setAccessMode('read only')
        .execute(read),
    close: () => db.destroy(),
  };
}

/** Opens the database and brings its schema up to date. */
export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  if (opts.driver === 'postgres' && !opts.url) {
    throw new ConfigError('database.postgres.url', 'required when database.driver is postgres');
  }
  const db = opts.driver === 'sqlite' ? openSqlite(opts.file) : openPostgres(opts);
  const migrator = new Migrator({
    db: db.writer,
    provider: { getMigrations: async () => migrationsFor(db.dialect) },
  });
  const { error } = await migrator.migrateToLatest();
  if (error) {
    await db.close();
    throw error;
  }
  return db;
}
