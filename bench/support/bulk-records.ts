import SQLite from 'better-sqlite3';
import type { Core, Principal, RequestMeta } from '../../src/core/context.js';
import { declareCollection } from '../../src/core/collections.js';
import { putRecord, type JsonObject } from '../../src/core/records.js';
import { createTenant } from '../../src/core/tenants.js';
import { recordBody } from './workloads.js';

/*
 * Builds a large database fast, in-process, through the same core functions the API calls: each
 * record is encrypted, indexed, versioned, audited and journaled as an HTTP write would be.
 */

const META: RequestMeta = { requestId: 'bench-recovery', sourceIp: '127.0.0.1' };
export const COLLECTION = 'bench';

export interface BenchTenant {
  tenantId: string;
  principal: Principal;
  /** Records written so far, for ids that do not repeat. */
  written: number;
}

/** A tenant with an owner key and one collection (`email` indexed). */
export async function createBenchTenant(core: Core, name: string): Promise<BenchTenant> {
  const created = await createTenant(core, { kind: 'system', name: 'bench' }, META, name);
  const principal: Principal = { kind: 'api_key', tenantId: created.tenantId, keyId: created.apiKeyId, scopes: ['admin'] };
  await declareCollection(core, principal, META, created.tenantId, COLLECTION, [{ field: 'email' }]);
  return { tenantId: created.tenantId, principal, written: 0 };
}

/** PUTs one record of each given size (bytes of JSON), all at once, so group commit batches them. */
export async function putRecords(core: Core, tenant: BenchTenant, sizes: readonly number[]): Promise<void> {
  const first = tenant.written;
  tenant.written += sizes.length;
  await Promise.all(
    sizes.map((bytes, i) =>
      putRecord(core, tenant.principal, META, { tenantId: tenant.tenantId, collection: COLLECTION, id: `r${first + i}` }, JSON.parse(recordBody(first + i, bytes)) as JsonObject),
    ),
  );
}

/** Bytes the SQLite database holds in pages that are in use (free pages left by shipped change-log entries excluded). */
export class DatabaseSize {
  private readonly db: SQLite.Database;

  constructor(file: string) {
    this.db = new SQLite(file, { readonly: true });
  }

  usedBytes(): number {
    const pragma = (name: string) => Number(this.db.pragma(name, { simple: true }));
    return (pragma('page_count') - pragma('freelist_count')) * pragma('page_size');
  }

  close(): void {
    this.db.close();
  }
}

/** The mix written: a few large records and many small ones, in rounds. */
export const ROUND = { large: 4, largeBytes: 128 * 1024, small: 256, smallBytes: 1024 } as const;
const ROUND_SIZES = [...Array<number>(ROUND.large).fill(ROUND.largeBytes), ...Array<number>(ROUND.small).fill(ROUND.smallBytes)];

/**
 * Writes rounds of records into `tenant` until the database uses `untilBytes`, shipping the change
 * log after each round (as the server's shipper would), so its entries do not count as data.
 */
export async function fillTenant(core: Core, tenant: BenchTenant, size: DatabaseSize, untilBytes: number, ship: () => Promise<unknown>): Promise<void> {
  while (size.usedBytes() < untilBytes) {
    await putRecords(core, tenant, ROUND_SIZES);
    await ship();
  }
}
