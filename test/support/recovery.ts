// Helpers for recovery tests: waiting for the shipper, and empty databases to restore into.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import type { Config } from '../../src/config/schema.js';
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

/** Where an object of the blob store lies on disk: the primary's file and the replica's. */
export function objectCopies(blobs: Config['blobs'], key: string): string[] {
  return [blobs.primary.path!, blobs.replica.path!].map((root) => join(root, ...key.split('/')));
}

/**
 * Changes an object in place on the primary and on the replica (the replicated store would
 * otherwise serve the intact copy): `change` returns its new bytes, or null to delete it. Returns
 * the function that puts the original bytes back.
 */
export function damageObject(blobs: Config['blobs'], key: string, change: (bytes: Buffer) => Buffer | null): () => void {
  const saved = objectCopies(blobs, key).map((file) => ({ file, bytes: readFileSync(file) }));
  for (const { file, bytes } of saved) {
    const changed = change(Buffer.from(bytes));
    if (changed === null) rmSync(file);
    else writeFileSync(file, changed);
  }
  return () => saved.forEach(({ file, bytes }) => writeFileSync(file, bytes, { mode: 0o600 }));
}

/** `bytes` with the byte at `offset` (from the end when negative) inverted. */
export function flipByte(bytes: Buffer, offset: number): Buffer {
  const at = offset < 0 ? bytes.length + offset : offset;
  bytes[at] = bytes[at]! ^ 0xff;
  return bytes;
}

/**
 * Environment that keeps a deployment's keys (local KMS) and blob store under `site`, outside any
 * data directory: all a disaster recovery starts from, shared by the original and the restored
 * instance.
 */
export function siteEnv(site: string): Record<string, string> {
  return {
    STRONGROOM_KMS__LOCAL__KEY_STORE_FILE: join(site, 'kms', 'keystore.json'),
    STRONGROOM_KMS__LOCAL__MASTER_KEY_FILE: join(site, 'kms', 'master.key'),
    STRONGROOM_BLOBS__PRIMARY__PATH: join(site, 'blobs', 'primary'),
    STRONGROOM_BLOBS__REPLICA__PATH: join(site, 'blobs', 'replica'),
  };
}

/** Where a database is: a SQLite file, or a PostgreSQL URL. */
export type DatabaseLocation = { driver: 'sqlite'; file: string } | { driver: 'postgres'; url: string };

/** The journal's and the shipper's sequences, read with a plain read-only connection: the database may belong to another process. */
export async function shippingHeads(where: DatabaseLocation): Promise<{ journalSeq: number; shippedSeq: number }> {
  const query = 'select (select seq from journal_head where id = 1) as journal, (select seq from ship_head where id = 1) as shipped';
  let row: { journal: number | string; shipped: number | string };
  if (where.driver === 'sqlite') {
    const db = new SQLite(where.file, { readonly: true, fileMustExist: true });
    try {
      row = db.prepare(query).get() as typeof row;
    } finally {
      db.close();
    }
  } else {
    const client = new pg.Client({ connectionString: where.url });
    await client.connect();
    try {
      row = (await client.query<typeof row>(query)).rows[0]!;
    } finally {
      await client.end();
    }
  }
  return { journalSeq: Number(row.journal), shippedSeq: Number(row.shipped) };
}

/** Waits until another process (a server) has shipped every entry journaled so far; returns that sequence. */
export async function waitShippedAt(where: DatabaseLocation, timeoutMs = 20_000): Promise<number> {
  const { journalSeq } = await shippingHeads(where);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { shippedSeq } = await shippingHeads(where);
    if (shippedSeq >= journalSeq) return journalSeq;
    if (Date.now() > deadline) throw new Error(`shipping stalled at ${shippedSeq} of ${journalSeq}`);
    await sleep(50);
  }
}

/** Polls `check` until it holds; fails naming `what` at the deadline, also when a check never returns. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting until ${what}`)), timeoutMs);
  });
  try {
    while (!(await Promise.race([check(), expired]))) await Promise.race([sleep(25), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Drops a PostgreSQL database, ending any connection to it: the database is lost. */
export async function dropDatabase(url: string): Promise<void> {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    await client.query(`DROP DATABASE "${name.replace(/"/g, '""')}" WITH (FORCE)`);
  } finally {
    await client.end();
  }
}
