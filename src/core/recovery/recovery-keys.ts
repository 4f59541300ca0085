import { hkdfSync, randomBytes } from 'node:crypto';
import { encodeAad, type DataKey } from '../../crypto/record-cipher.js';
import { ConflictError } from '../../errors.js';
import type { Kms } from '../../kms/kms.js';
import { SYSTEM_CHAIN } from '../audit-events.js';
import type { Actor, Core } from '../context.js';
import { kekName, tenantDataKey, wrapAad } from '../tenant-keys.js';

/**
 * Keys of shipped segments and backups. Each segment or backup has its own random system key,
 * wrapped by the KMS key `system.recovery` and stored beside it, so a machine that kept only the
 * blob store and the KMS can open them. Tenant data inside stays under the tenant's own data key,
 * stored beside it wrapped by the tenant's KEK: destroying that KEK makes every copy unreadable.
 */
export const RECOVERY_KEY = 'system.recovery';

const ensured = new WeakSet<Kms>();

async function ensureRecoveryKey(kms: Kms): Promise<void> {
  if (ensured.has(kms)) return;
  await kms.createKey(RECOVERY_KEY).catch((error: unknown) => {
    if (!(error instanceof ConflictError)) throw error;
  });
  ensured.add(kms);
}

/** A system key opened: one key for MACs, one (as a data key) for sealing system data. */
export interface SystemKey {
  macKey: Buffer;
  sealKey: DataKey;
}

const derive = (key: Buffer, purpose: string) => Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), `strongroom/recovery/${purpose}`, 32));

function systemKeyFrom(key: Buffer): SystemKey {
  return { macKey: derive(key, 'mac'), sealKey: { id: 0, key: derive(key, 'seal') } };
}

/** `aad` names what the key protects (a segment, a backup), so a wrapped key cannot be moved to another. */
export async function newSystemKey(kms: Kms, aad: readonly (string | number)[]): Promise<{ key: SystemKey; wrapped: Buffer }> {
  await ensureRecoveryKey(kms);
  const key = randomBytes(32);
  try {
    const wrapped = await kms.wrapKey(RECOVERY_KEY, key, encodeAad(['strongroom/recovery', ...aad]));
    return { key: systemKeyFrom(key), wrapped };
  } finally {
    key.fill(0);
  }
}

export async function openSystemKey(kms: Kms, wrapped: Buffer, aad: readonly (string | number)[]): Promise<SystemKey> {
  const key = await kms.unwrapKey(RECOVERY_KEY, wrapped, encodeAad(['strongroom/recovery', ...aad]));
  try {
    return systemKeyFrom(key);
  } finally {
    key.fill(0);
  }
}

/**
 * The key that seals what `owner` (a tenant, or `_system`) has in a segment or backup: the tenant's
 * current data key, whose id and wrapped bytes travel with it, or the system key's sealing key.
 */
export async function sealingKeyFor(core: Core, owner: string, system: SystemKey, caller: Actor): Promise<{ key: DataKey; keyId: number | null; wrappedKey: string | null }> {
  if (owner === SYSTEM_CHAIN || (await isShredding(core, owner))) return { key: system.sealKey, keyId: null, wrappedKey: null };
  const key = await tenantDataKey(core, owner, caller);
  const row = await core.db.reader
    .selectFrom('data_keys')
    .select('wrapped')
    .where('tenant_id', '=', owner)
    .where('key_id', '=', key.id)
    .executeTakeFirstOrThrow();
  return { key, keyId: key.id, wrappedKey: row.wrapped.toString('base64') };
}

/**
 * Once a purge has scheduled the destruction of a tenant's key, nothing more can be sealed under
 * it; what the tenant still has journaled then is only the deployment's own bookkeeping (key-use
 * audit events), sealed under the system key instead of holding the log up. Before that point (a
 * tenant merely `purging`) its entries are sealed under its own key like any other, so that the
 * key's destruction shreds them too.
 */
async function isShredding(core: Core, tenantId: string): Promise<boolean> {
  const row = await core.db.reader.selectFrom('tenant_purges').select('kek_scheduled_at').where('tenant_id', '=', tenantId).executeTakeFirst();
  return row !== undefined && row.kek_scheduled_at !== null;
}

/** Opens tenant data keys carried in segments and backups with the KMS alone, once per distinct key. */
export class CarriedKeys {
  private readonly opened = new Map<string, Promise<DataKey>>();
  private readonly shreddedTenants = new Map<string, Promise<boolean>>();

  constructor(private readonly kms: Kms) {}

  open(tenantId: string, keyId: number, wrapped: Buffer): Promise<DataKey> {
    const id = `${tenantId}\u0000${keyId}\u0000${wrapped.toString('base64')}`;
    let key = this.opened.get(id);
    if (!key) {
      key = this.kms.unwrapKey(kekName(tenantId), wrapped, wrapAad(tenantId, keyId, 'data')).then((k) => ({ id: keyId, key: k }));
      this.opened.set(id, key);
    }
    return key;
  }

  /**
   * Whether the tenant's KEK is destroyed or scheduled for destruction (a purged tenant): its copies
   * are ciphertext no one can read, and what it journaled while being purged (under the system key)
   * is of no use without them, so a restore leaves the tenant out.
   */
  shredded(tenantId: string): Promise<boolean> {
    let answer = this.shreddedTenants.get(tenantId);
    if (!answer) {
      answer = this.kms
        .listKeyVersions(kekName(tenantId))
        .then((versions) => versions.length > 0 && versions.every((v) => v.state === 'destroyed' || v.state === 'destroy_scheduled'))
        .catch(() => false);
      this.shreddedTenants.set(tenantId, answer);
    }
    return answer;
  }

  clear(): void {
    for (const key of this.opened.values()) void key.then((k) => k.key.fill(0)).catch(() => undefined);
    this.opened.clear();
  }
}
