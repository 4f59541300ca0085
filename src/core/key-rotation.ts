import { NotFoundError } from '../errors.js';
import { wrappedKeyVersion } from '../kms/kms.js';
import { auditInTx, plainTarget } from './audit-events.js';
import { recordProgress } from './job-progress.js';
import type { Actor, Core } from './context.js';
import { kekName, wrapAad, type Purpose } from './tenant-keys.js';

const REWRAP: Actor = { kind: 'system', name: 'rewrap' };
const META = { requestId: '-', sourceIp: '-' };

/** The primary version of a KMS key. */
export async function primaryVersion(core: Core, keyName: string): Promise<number> {
  const primary = (await core.kms.listKeyVersions(keyName)).find((v) => v.primary);
  if (!primary) throw new Error(`KMS key ${keyName} has no primary version`);
  return primary.version;
}

/**
 * Re-wraps the tenant's data keys that an older version of its KEK wraps under the primary one.
 * Only data keys pass through memory, never a record. Each row is replaced only if it still holds
 * what was read (compare and swap), in one transaction with its `kms.rewrap` audit event: two runs
 * at once do no harm, and after a crash the next run carries on. Returns how many it re-wrapped.
 */
async function rewrapTenant(core: Core, tenantId: string, primary: number): Promise<number> {
  const kek = kekName(tenantId);
  const rows = await core.db.reader.selectFrom('data_keys').select(['key_id', 'purpose', 'wrapped']).where('tenant_id', '=', tenantId).orderBy('key_id').execute();
  let rewrapped = 0;
  for (const row of rows) {
    const from = wrappedKeyVersion(row.wrapped);
    if (from === primary) continue;
    const aad = wrapAad(tenantId, row.key_id, row.purpose as Purpose);
    const key = await core.kms.unwrapKey(kek, row.wrapped, aad);
    let wrapped: Buffer;
    try {
      wrapped = await core.kms.wrapKey(kek, key, aad);
    } finally {
      key.fill(0);
    }
    const changed = await core.committer.submit(tenantId, async (tx, batch) => {
      const result = await tx
        .updateTable('data_keys')
        .set({ wrapped })
        .where('tenant_id', '=', tenantId)
        .where('key_id', '=', row.key_id)
        .where('wrapped', '=', row.wrapped)
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) === 0) return false;
      const target = plainTarget(`data-key:${row.key_id} kek-version:${from}->${wrappedKeyVersion(wrapped)}`);
      await auditInTx(tx, batch, core, REWRAP, META, { tenantId, action: 'kms.rewrap', target, result: 'ok' });
      return true;
    });
    if (changed) rewrapped += 1;
  }
  return rewrapped;
}

export interface KeyVersionCounts {
  tenantId: string;
  primary: number;
  /** Data keys per KEK version that wraps them. */
  dataKeys: Record<number, number>;
}

/** Data keys that an older version than the primary wraps, for one tenant. */
export const staleDataKeys = (t: KeyVersionCounts) =>
  Object.entries(t.dataKeys).reduce((n, [version, count]) => (Number(version) === t.primary ? n : n + count), 0);

/** For each tenant: its KEK's primary version and how many data keys each version wraps. */
export async function dataKeyVersions(core: Core): Promise<KeyVersionCounts[]> {
  const rows = await core.db.reader.selectFrom('data_keys').select(['tenant_id', 'wrapped']).orderBy('tenant_id').execute();
  const byTenant = new Map<string, Record<number, number>>();
  for (const row of rows) {
    const counts = byTenant.get(row.tenant_id) ?? {};
    const version = wrappedKeyVersion(row.wrapped);
    counts[version] = (counts[version] ?? 0) + 1;
    byTenant.set(row.tenant_id, counts);
  }
  const result: KeyVersionCounts[] = [];
  for (const [tenantId, dataKeys] of byTenant) result.push({ tenantId, primary: await primaryVersion(core, kekName(tenantId)), dataKeys });
  return result;
}

export const REWRAP_JOB = 'rewrap';

/**
 * Re-wraps every tenant's data keys that are not on their KEK's primary version, tenant by tenant,
 * recording progress for `keys status`. Returns how many keys it re-wrapped.
 */
export async function rewrapAll(core: Core, onProgress?: (progress: { done: number; total: number }) => void): Promise<number> {
  const pending = (await dataKeyVersions(core)).filter((t) => staleDataKeys(t) > 0);
  const total = pending.reduce((sum, t) => sum + staleDataKeys(t), 0);
  const run = { startedAt: core.now(), total, done: 0, finished: false };
  await recordProgress(core, REWRAP_JOB, run);
  for (const tenant of pending) {
    run.done += await rewrapTenant(core, tenant.tenantId, tenant.primary);
    await recordProgress(core, REWRAP_JOB, run);
    onProgress?.({ done: run.done, total });
  }
  run.finished = true;
  await recordProgress(core, REWRAP_JOB, run);
  return run.done;
}

/**
 * Rotates each named KEK whose primary version is at least `maxAgeMs` old (by the KMS's creation
 * time); returns the names rotated. Keys the KMS does not know are skipped.
 */
export async function rotateDueKeys(core: Core, keyNames: string[], maxAgeMs: number): Promise<string[]> {
  const rotated: string[] = [];
  for (const name of keyNames) {
    const versions = await core.kms.listKeyVersions(name).catch((error: unknown) => {
      if (error instanceof NotFoundError) return [];
      throw error;
    });
    const primary = versions.find((v) => v.primary);
    if (!primary || primary.state !== 'enabled' || core.now() - primary.createdAt.getTime() < maxAgeMs) continue;
    await core.kms.rotateKey(name);
    rotated.push(name);
  }
  return rotated;
}
