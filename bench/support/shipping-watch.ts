import { setTimeout as sleep } from 'node:timers/promises';
import SQLite from 'better-sqlite3';

/**
 * How long acknowledged writes wait before they are in shipped storage, watched from outside the
 * server through a read-only connection to its SQLite file. Right after an acknowledgement the
 * journal head is at or past the write's own sequence; the write is shipped once the shipped head
 * reaches that value. Each wait is thus an upper bound of that write's RPO, give or take the poll
 * interval.
 */
export class ShippingWatch {
  /** Milliseconds from acknowledgement to shipped, one per write whose shipping was seen. */
  readonly waitsMs: number[] = [];
  private readonly db: SQLite.Database;
  private readonly journalSeq: SQLite.Statement<[], number>;
  private readonly shippedSeq: SQLite.Statement<[], number>;
  /** In acknowledgement order, hence in journal-head order: the front is always shipped first. */
  private readonly waiting: { seq: number; ackedAt: number }[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    databaseFile: string,
    private readonly pollMs = 5,
  ) {
    this.db = new SQLite(databaseFile, { readonly: true });
    this.db.pragma('busy_timeout = 5000');
    this.journalSeq = this.db.prepare<[], number>('SELECT seq FROM journal_head WHERE id = 1').pluck();
    this.shippedSeq = this.db.prepare<[], number>('SELECT seq FROM ship_head WHERE id = 1').pluck();
  }

  /**
   * Waits until the server's shipping job (`journal.ship`) holds its lease, i.e. runs: until then a
   * freshly started server ships nothing (its scheduler ticks once a second). Returns the wait in ms.
   */
  async shipperRunning(timeoutMs: number): Promise<number> {
    const started = performance.now();
    const lease = this.db.prepare<[], string | null>("SELECT lease_owner FROM job_schedule WHERE name = 'journal.ship'").pluck();
    while (!lease.get()) {
      if (performance.now() - started > timeoutMs) throw new Error(`the server's journal.ship job did not start within ${timeoutMs} ms`);
      await sleep(this.pollMs);
    }
    return performance.now() - started;
  }

  /** Call the moment a write is acknowledged. */
  acknowledged(): void {
    const ackedAt = performance.now();
    this.waiting.push({ seq: Number(this.journalSeq.get()), ackedAt });
    this.timer ??= setInterval(() => this.poll(), this.pollMs);
  }

  private poll(): void {
    const shipped = Number(this.shippedSeq.get());
    const now = performance.now();
    while (this.waiting.length > 0 && this.waiting[0]!.seq <= shipped) this.waitsMs.push(now - this.waiting.shift()!.ackedAt);
    if (this.waiting.length === 0) this.stopPolling();
  }

  private stopPolling(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Waits until every acknowledged write is shipped, at most `timeoutMs`; returns how many still are not. */
  async drain(timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    while (this.waiting.length > 0 && performance.now() < deadline) await sleep(this.pollMs);
    return this.waiting.length;
  }

  close(): void {
    this.stopPolling();
    this.db.close();
  }
}
