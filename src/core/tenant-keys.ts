import { randomBytes } from 'node:crypto';
import { encodeAad, type DataKey } from '../crypto/record-cipher.js';
import { deriveIndexKey } from '../crypto/blind-index.js';
import { NotFoundError } from '../errors.js';
import { wrappedKeyVersion, type Kms } from '../kms/kms.js';
import type { Tx } from '../store/db/group-commit.js';
import type { Actor, Core } from './context.js';

/**
 * Each tenant has its own key-encryption key in the KMS and data keys wrapped by it: one from which
 * blind-index and record-id keys are derived, and data keys that encrypt record bodies. Rotating
 * the data key adds a newer one (ids 3, 4, …); the newest encrypts new data, older ones only decrypt.
 */
export const DATA_KEY_ID = 1;
export const INDEX_KEY_ID = 2;

export type Purpose = 'data' | 'index';

export const kekName = (tenantId: string) => `tenant.${tenantId}`;

export const wrapAad = (tenantId: string, keyId: number, purpose: Purpose) =>
  encodeAad(['strongroom/data-key', tenantId, keyId, purpose]);

export interface NewTenantKeys {
  dataKey: DataKey;
  rows: { key_id: number; purpose: Purpose; wrapped: Buffer }[];
}

/** Creates the tenant's KEK and wraps fresh data keys under it; the caller stores the rows. */
export async function createTenantKeys(kms: Kms, tenantId: string): Promise<NewTenantKeys> {
  await kms.createKey(kekName(tenantId));
  const data = randomBytes(32);
  const index = randomBytes(32);
  const rows = [
    { key_id: DATA_KEY_ID, purpose: 'data' as const, wrapped: await kms.wrapKey(kekName(tenantId), data, wrapAad(tenantId, DATA_KEY_ID, 'data')) },
    { key_id: INDEX_KEY_ID, purpose: 'index' as const, wrapped: await kms.wrapKey(kekName(tenantId), index, wrapAad(tenantId, INDEX_KEY_ID, 'index')) },
  ];
  index.fill(0);
  return { dataKey: { id: DATA_KEY_ID, key: data }, rows };
}

export async function insertTenantKeys(tx: Tx, tenantId: string, keys: NewTenantKeys, now: number): Promise<void> {
  await tx
    .insertInto('data_keys')
    .values(keys.rows.map((r) => ({ tenant_id: tenantId, ...r, created_at: now })))
    .execute();
}

/**
 * The keyring's loader: reads a wrapped data key and unwraps it with the tenant's KEK, then records
 * that use of the KMS with `audit`. A use that cannot be audited fails, and its key is wiped.
 */
export function dataKeyUnwrapper(
  db: Core['db'],
  kms: Kms,
  audit: (tenantId: string, use: { keyId: number; purpose: string; kekVersion: number }, caller: Actor) => Promise<void>,
) {
  return async (tenantId: string, keyId: number, caller: Actor): Promise<Buffer> => {
    const row = await db.reader
      .selectFrom('data_keys')
      .select(['wrapped', 'purpose'])
      .where('tenant_id', '=', tenantId)
      .where('key_id', '=', keyId)
      .executeTakeFirst();
    if (!row) throw new NotFoundError('tenant not found');
    const key = await kms.unwrapKey(kekName(tenantId), row.wrapped, wrapAad(tenantId, keyId, row.purpose as Purpose));
    try {
      await audit(tenantId, { keyId, purpose: row.purpose, kekVersion: wrappedKeyVersion(row.wrapped) }, caller);
    } catch (error) {
      key.fill(0);
      throw error;
    }
    return key;
  };
}

/** The data key the tenant encrypts new data under, fetched in the name of `caller`. */
export async function tenantDataKey(core: Core, tenantId: string, caller: Actor): Promise<DataKey> {
  const keyId = core.currentDataKeys.getSync(tenantId) ?? (await core.currentDataKeys.get(tenantId));
  if (keyId === null) throw new NotFoundError('tenant not found');
  return tenantDataKeyById(core, tenantId, keyId, caller);
}

/**
 * The keyring lends its buffers and zero-fills them on eviction; requests hold a key across awaits
 * (until their batch commits), so they take a copy of 32 bytes.
 */
export async function tenantDataKeyById(core: Core, tenantId: string, keyId: number, caller: Actor): Promise<DataKey> {
  const lent = core.keyring.getSync(tenantId, keyId) ?? (await core.keyring.get(tenantId, keyId, caller));
  return { id: keyId, key: Buffer.from(lent) };
}

/**
 * The keys of a collection, derived from the tenant's index key: one hashes record ids, one per
 * field makes blind-index tokens. Derivations are cached with the index key in the keyring.
 */
export async function collectionKeys(core: Core, tenantId: string, collection: string, caller: Actor) {
  const { key: root } = await tenantDataKeyById(core, tenantId, INDEX_KEY_ID, caller);
  const derive = (field: string) =>
    core.keyring.derivedSync(tenantId, INDEX_KEY_ID, `${collection}\u0000${field}`, (key) => deriveIndexKey(key, collection, field)) ??
    deriveIndexKey(root, collection, field);
  return {
    // A copy: callers hold the id key across awaits.
    idKey: Buffer.from(derive('$id')),
    /** Lent: use it synchronously. */
    fieldKey: derive,
  };
}

/** The key under which member e-mail addresses are hashed, so an invitation is found without decrypting. */
export async function memberEmailKey(core: Core, tenantId: string, caller: Actor): Promise<Buffer> {
  const { key: root } = await tenantDataKeyById(core, tenantId, INDEX_KEY_ID, caller);
  return deriveIndexKey(root, '$members', 'email');
}
