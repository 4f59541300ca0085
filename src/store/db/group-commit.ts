import type { Kysely, Transaction } from 'kysely';
import { loadTenantHeads } from './heads.js';
import { appendEntries, StatementRecorder, type JournalEntry, type JournalRange } from './statement-journal.js';
import type { Tables } from './tables.js';

export type Tx = Transaction<Tables>;

/**
 * State shared by the operations of one batch, such as the head of a tenant's audit chain: read
 * once per batch, carried from operation to operation, written once before the commit. Values an
 * operation sets are staged and dropped if that operation rolls back to its savepoint.
 */
export class BatchState {
  constructor(readonly dialect: 'sqlite' | 'postgres') {}

  private readonly committed = new Map<string, unknown>();
  private staged = new Map<string, unknown>();
  private readonly flushes = new Map<string, (tx: Tx) => Promise<void>>();
  private stagedFlushes = new Map<string, (tx: Tx) => Promise<void>>();

  /** Sets a value read from the database for the whole batch: nothing to flush, nothing to undo. */
  prime<T>(key: string, value: T): void {
    this.committed.set(key, value);
  }

  get<T>(key: string): T | undefined {
    return (this.staged.has(key) ? this.staged.get(key) : this.committed.get(key)) as T | undefined;
  }

  /** Sets a value for the rest of the batch; `flush` writes it to the database before the commit. */
  set<T>(key: string, value: T, flush?: (tx: Tx) => Promise<void>): void {
    this.staged.set(key, value);
    if (flush) this.stagedFlushes.set(key, flush);
  }

  keep(): void {
    for (const [k, v] of this.staged) this.committed.set(k, v);
    for (const [k, f] of this.stagedFlushes) this.flushes.set(k, f);
    this.discard();
  }

  discard(): void {
    this.staged = new Map();
    this.stagedFlushes = new Map();
  }

  async flush(tx: Tx): Promise<void> {
    for (const write of this.flushes.values()) await write(tx);
  }
}

export type BatchOperation<T> = (tx: Tx, batch: BatchState) => Promise<T>;

interface Pending {
  tenantId: string;
  run: BatchOperation<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  /** Resolve with `{ value, journal }`: the value and the journal sequences of the operation's writes. */
  withSeq: boolean;
}

/**
 * Group commit: operations submitted while a transaction is running wait for the next one, which
 * takes them all, so many requests share one transaction and one fsync. Each operation runs inside
 * its own savepoint, so one that fails rolls back alone; none is acknowledged before the commit
 * that holds it has returned.
 */
export class GroupCommitter {
  private queue: Pending[] = [];
  private running = false;
  private closed = false;

  constructor(
    private readonly db: Kysely<Tables>,
    private readonly dialect: 'sqlite' | 'postgres',
    private readonly maxBatch: number,
    /** The time each change-log entry records. */
    private readonly now: () => number = Date.now,
  ) {}

  /** Runs `run` in the next batch; `tenantId` names the tenant whose chain heads it will move. */
  submit<T>(tenantId: string, run: BatchOperation<T>): Promise<T> {
    return this.enqueue(tenantId, run, false) as Promise<T>;
  }

  /** Like `submit`, and also gives the journal sequences the operation's writes took (null if none were journaled). */
  submitJournaled<T>(tenantId: string, run: BatchOperation<T>): Promise<{ value: T; journal: JournalRange | null }> {
    return this.enqueue(tenantId, run, true) as Promise<{ value: T; journal: JournalRange | null }>;
  }

  private enqueue(tenantId: string, run: BatchOperation<unknown>, withSeq: boolean): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error('the database is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ tenantId, run, resolve, reject, withSeq });
      if (!this.running) {
        this.running = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  /** Waits for queued operations to commit, then refuses new ones. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.running) await new Promise((r) => setImmediate(r));
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      await this.commitBatch(batch);
    }
    this.running = false;
  }

  private async commitBatch(batch: Pending[]): Promise<void> {
    const results: { ok: boolean; value: unknown; journal: JournalRange | null }[] = [];
    try {
      const tx = await this.db.startTransaction().execute();
      try {
        const state = new BatchState(this.dialect);
        await loadTenantHeads(tx, state, [...new Set(batch.map((op) => op.tenantId))].sort());
        const entries: JournalEntry[] = [];
        const entryOf: number[] = [];
        for (const op of batch) {
          const savepoint = await tx.savepoint('op').execute();
          try {
            const recorder = new StatementRecorder();
            const value = await op.run(savepoint.withPlugin(recorder), state);
            await savepoint.releaseSavepoint('op').execute();
            state.keep();
            entryOf.push(recorder.statements.length > 0 ? entries.push({ tenantId: op.tenantId, statements: recorder.statements }) - 1 : -1);
            results.push({ ok: true, value, journal: null });
          } catch (error) {
            await savepoint.rollbackToSavepoint('op').execute();
            state.discard();
            entryOf.push(-1);
            results.push({ ok: false, value: error, journal: null });
          }
        }
        await state.flush(tx);
        const ranges = entries.length > 0 ? await appendEntries(tx, entries, this.now()) : [];
        results.forEach((result, i) => (result.journal = ranges[entryOf[i]!] ?? null));
        await tx.commit().execute();
      } catch (error) {
        await tx.rollback().execute().catch(() => undefined);
        throw error;
      }
    } catch (error) {
      for (const op of batch) op.reject(error);
      return;
    }
    batch.forEach((op, i) => {
      const result = results[i]!;
      if (!result.ok) op.reject(result.value);
      else op.resolve(op.withSeq ? { value: result.value, journal: result.journal } : result.value);
    });
  }
}
