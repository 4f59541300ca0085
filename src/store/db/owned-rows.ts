import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { JOURNALED_TABLES, type JournaledTable } from './journaled-tables.js';
import { stringifyTagged } from './statement-journal.js';
import type { Tables } from './tables.js';

type Row = Record<string, unknown>;
const PAGE = 1000;

/** A table's rows owned by `owner` (a tenant, or `_system`), in primary-key order, a page at a time. */
export async function* ownedRows(db: Kysely<Tables>, table: JournaledTable, owner: string): AsyncGenerator<Row> {
  let after: unknown[] | null = null;
  const key = table.key.map((column) => sql.ref(column));
  for (;;) {
    const page: Row[] = (
      await sql<Row>`select * from ${sql.table(table.name)} where ${sql.ref(table.tenantColumn)} = ${owner}
        ${after ? sql`and (${sql.join(key)}) > (${sql.join(after)})` : sql``}
        order by ${sql.join(key)} limit ${PAGE}`.execute(db)
    ).rows;
    for (const row of page) yield row;
    if (page.length < PAGE) return;
    const last = page.at(-1)!;
    after = table.key.map((column) => last[column]);
  }
}

/**
 * A digest of every row `owner` has in the given tables, columns sorted by name and rows combined
 * by a sum of their SHA-256 (mod 2^256), so row order (which collations change) does not matter:
 * the same on SQLite and PostgreSQL for the same contents, to compare a restore with its original.
 */
export async function ownedDigest(db: Kysely<Tables>, owner: string, tables: readonly string[] = JOURNALED_TABLES.map((t) => t.name)): Promise<string> {
  const total = createHash('sha256');
  for (const table of JOURNALED_TABLES.filter((t) => tables.includes(t.name))) {
    let sum = 0n;
    let count = 0;
    for await (const row of ownedRows(db, table, owner)) {
      const sorted = Object.fromEntries(Object.keys(row).sort().map((column) => [column, row[column]]));
      sum = (sum + BigInt(`0x${createHash('sha256').update(stringifyTagged(sorted)).digest('hex')}`)) % MODULUS;
      count += 1;
    }
    total.update(`${table.name}:${count}:${sum.toString(16)}\n`);
  }
  return total.digest('hex');
}

const MODULUS = 1n << 256n;
