import { planBlindIndex } from '../crypto/blind-index.js';
import { BadRequestError, ConflictError, NotFoundError } from '../errors.js';
import { authorize } from '../policy/authorize.js';
import type { Tx } from '../store/db/group-commit.js';
import type { Core, Principal, RequestMeta } from './context.js';
import { auditInTx, plainTarget } from './audit-events.js';
import { COLLECTION_NAME, FIELD_NAME, checkFormat } from './ids.js';

export interface IndexRequest {
  field: string;
  bits?: number | undefined;
  expectedRows?: number | undefined;
}

export interface IndexSpec {
  field: string;
  bits: number;
  expectedRows: number;
}

export interface CollectionSpec {
  indexes: IndexSpec[];
}

/** Without a stated population, indexes are planned for 100,000 records. */
export const DEFAULT_EXPECTED_ROWS = 100_000;

export function planCollection(core: Core, indexes: IndexRequest[]): CollectionSpec {
  if (indexes.length > core.limits.maxIndexedFields) {
    throw new BadRequestError(`a collection may index at most ${core.limits.maxIndexedFields} fields`);
  }
  const seen = new Set<string>();
  return {
    indexes: indexes.map((index) => {
      checkFormat(index.field, FIELD_NAME, `index field name "${index.field}"`);
      if (seen.has(index.field)) throw new BadRequestError(`field "${index.field}" is indexed twice`);
      seen.add(index.field);
      const expectedRows = index.expectedRows ?? DEFAULT_EXPECTED_ROWS;
      const { bits } = planBlindIndex({ bits: index.bits, expectedRows });
      return { field: index.field, bits, expectedRows };
    }),
  };
}

const sameSpec = (a: CollectionSpec, b: CollectionSpec) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Declares a collection and its indexed fields. The indexes of a collection that holds records
 * cannot change: its blind indexes would have to be rebuilt from every record.
 */
export async function declareCollection(
  core: Core,
  principal: Principal,
  meta: RequestMeta,
  tenantId: string,
  name: string,
  indexes: IndexRequest[],
): Promise<{ name: string; spec: CollectionSpec; created: boolean }> {
  authorize(principal, 'collections.write', { tenantId });
  checkFormat(name, COLLECTION_NAME, 'collection name');
  const spec = planCollection(core, indexes);
  return core.committer.submit(tenantId, async (tx, batch) => {
    const now = core.now();
    const existing = await readSpec(tx, tenantId, name);
    if (existing && !sameSpec(existing, spec)) {
      const anyRecord = await tx
        .selectFrom('records')
        .select('version')
        .where('tenant_id', '=', tenantId)
        .where('collection', '=', name)
        .limit(1)
        .executeTakeFirst();
      if (anyRecord) throw new ConflictError('the indexes of a collection that holds records cannot change');
    }
    if (!existing) {
      await tx
        .insertInto('collections')
        .values({ tenant_id: tenantId, name, spec: JSON.stringify(spec), created_at: now, updated_at: now })
        .execute();
    } else if (!sameSpec(existing, spec)) {
      await tx
        .updateTable('collections')
        .set({ spec: JSON.stringify(spec), updated_at: now })
        .where('tenant_id', '=', tenantId)
        .where('name', '=', name)
        .execute();
    }
    await auditInTx(tx, batch, core, principal, meta, {
      tenantId,
      action: 'collection.put',
      target: plainTarget(`collection:${name}`),
      result: 'ok',
    });
    return { name, spec, created: !existing };
  });
}

export async function readSpec(tx: Tx | Core['db']['reader'], tenantId: string, name: string): Promise<CollectionSpec | undefined> {
  const row = await tx
    .selectFrom('collections')
    .select('spec')
    .where('tenant_id', '=', tenantId)
    .where('name', '=', name)
    .executeTakeFirst();
  return row ? (JSON.parse(row.spec) as CollectionSpec) : undefined;
}

export async function requireSpec(tx: Tx | Core['db']['reader'], tenantId: string, name: string): Promise<CollectionSpec> {
  const spec = await readSpec(tx, tenantId, name);
  if (!spec) throw new NotFoundError(`collection "${name}" is not declared`);
  return spec;
}
