// Helpers for recovery tests: waiting for the shipper, and empty databases to restore into.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { shipPending, shippingStatus } from '../../src/core/recovery/ship.js';
import { ownedDigest } from '../../src/store/db/owned-rows.js';
import { openDatabase, type Database } from '../../src/store/db/open.js';
import { freshPostgresUrl, type Driver, type Harness } from './strongroom.js';

/** Waits until the running shipper has shipped every entry journaled so far; returns that sequence. */
export async function waitShipped(h: Harness, timeoutMs = 20_000): Promise<number> {
  const { journalSeq } = await shippingStatus(h.core);
  await waitShippedThrough(h, journalSeq, timeoutMs);
  return journalSeq;
}

/**
 * A tenant's state and the journal sequence it is at, read in one snapshot (background work such as
 * the shipper's own audited key use may append to the tenant at any time), once shipped.
 */
export async function shippedCheckpoint(h: Harness, tenantId: string, tables?: readonly string[]): Promise<{ seq: number; digest: string }> {
  const point = await h.core.db.snapshot(async (db) => ({
    seq: Number((await db.selectFrom('journal_head').select('seq').executeTakeFirstOrThrow()).seq),
    digest: await ownedDigest(db, tenantId, tables),
  }));
  await waitShippedThrough(h, point.seq);
  return point;
}

/** Ships (or waits for the running shipper, which holds the lease) through `seq`. */
async function waitShippedThrough(h: Harness, seq: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await shipPending(h.core);
    if (status.shippedSeq >= seq) return;
    if (Date.now() > deadline) throw new Error(`shipping stalled at ${status.shippedSeq} of ${seq}`);
    await sleep(50);
  }
}

/** A freshly migrated, empty database of the given kind; `close` also removes it (SQLite). */
export async function emptyDatabase(driver: Driver): Promise<Database & { where: string }> {
  if (driver === 'postgres') {
    const url = await freshPostgresUrl();
    const db = await openDatabase({ driver: 'postgres', url, sslMode: 'disable', caFile: null, poolSize: 4 });
    return Object.assign(db, { where: url });
  }
  const dir = mkdtempSync(join(tmpdir(), 'strongroom-restore-'));
  const db = await openDatabase({ driver: 'sqlite', file: join(dir, 'restored.db') });
  const close = db.close.bind(db);
  return Object.assign(db, {
    where: dir,
    async close() {
      await close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}
