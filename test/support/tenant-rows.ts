// Row counts of everything a tenant owns, read straight from the database (no API call, which
// would itself append audit events): tests compare them before and after a request to prove it
// wrote nothing, or exactly what it should.
import type { Harness } from './strongroom.js';

export const TENANT_TABLES = [
  'records',
  'record_versions',
  'record_index',
  'audit_events',
  'collections',
  'api_keys',
  'members',
  'data_keys',
  'access_requests',
  'outbox',
  'files',
  'file_versions',
  'file_folders',
  'signed_url_uses',
  'exports',
] as const;

export type TenantRowCounts = Record<(typeof TENANT_TABLES)[number], number>;

export async function tenantRowCounts(h: Harness, tenantId: string): Promise<TenantRowCounts> {
  const counts = {} as TenantRowCounts;
  for (const table of TENANT_TABLES) {
    const row = await h.core.db.reader
      .selectFrom(table)
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('tenant_id', '=', tenantId)
      .executeTakeFirstOrThrow();
    counts[table] = Number(row.n);
  }
  return counts;
}
