import { appendAuditEvent } from '../audit/append.js';
import { encodeAad, openRecord, recordKeyId, sealRecord, type DataKey } from '../crypto/record-cipher.js';
import type { BatchState, Tx } from '../store/db/group-commit.js';
import { actorName, type Actor, type Core, type RequestMeta } from './context.js';
import { SHREDDED_STATUSES } from './tenants.js';
import { tenantDataKeyById } from './tenant-keys.js';

/**
 * Audit targets are stored in one of two forms, told apart by the first byte: 0x00 then UTF-8 for
 * names that carry no customer data (an API key id), or a sealed record-cipher message (first byte
 * 0x01) for anything a tenant chose, such as a record id.
 */
const PLAIN = 0x00;

export type AuditTarget = Buffer;

export function plainTarget(text: string): AuditTarget {
  return Buffer.concat([Buffer.of(PLAIN), Buffer.from(text, 'utf8')]);
}

const targetAad = (tenantId: string) => encodeAad(['strongroom/audit-target', tenantId]);

export function sealedTarget(dataKey: DataKey, tenantId: string, text: string): AuditTarget {
  return sealRecord(dataKey, targetAad(tenantId), Buffer.from(text, 'utf8'));
}

export async function readTarget(core: Core, caller: Actor, tenantId: string, target: Buffer): Promise<string> {
  if (target[0] === PLAIN) return target.subarray(1).toString('utf8');
  const key = await tenantDataKeyById(core, tenantId, recordKeyId(target), caller);
  return openRecord(key, targetAad(tenantId), target).toString('utf8');
}

/** The request metadata of work no request caused: a background job, the keyring. */
export const NO_REQUEST: RequestMeta = { requestId: '-', sourceIp: '-' };

export interface AuditEntry {
  tenantId: string;
  action: string;
  target: AuditTarget;
  result: 'ok' | 'denied' | 'not_found' | 'conflict' | 'error';
}

const actorLabel = (actor: Actor) => (actor.kind === 'system' ? `system:${actor.name}` : actorName(actor));

/** Appends an audit event inside the caller's transaction (writes and admin actions). */
export function auditInTx(
  tx: Tx,
  batch: BatchState,
  core: Core,
  actor: Actor,
  meta: RequestMeta,
  entry: AuditEntry,
): Promise<number> {
  return appendAuditEvent(tx, batch, {
    tenantId: entry.tenantId,
    at: core.now(),
    actor: actorLabel(actor),
    action: entry.action,
    target: entry.target,
    result: entry.result,
    requestId: meta.requestId,
    sourceIp: meta.sourceIp,
  });
}

/** Audits a read: committed (batched with others) before the caller answers; a failure fails the read. */
export async function auditRead(core: Core, actor: Actor, meta: RequestMeta, entry: AuditEntry): Promise<void> {
  await core.committer.submit(entry.tenantId, (tx, batch) => auditInTx(tx, batch, core, actor, meta, entry));
}

const KEYRING: Actor = { kind: 'system', name: 'keyring' };

/**
 * Records that the tenant's KEK (which version, for which purpose) unwrapped a data key on a keyring
 * miss, in the name of the caller whose request needed it.
 */
export function auditKeyUse(core: Core, tenantId: string, use: { keyId: number; purpose: string; kekVersion: number }, caller: Actor): Promise<void> {
  return auditRead(core, caller, NO_REQUEST, {
    tenantId,
    action: 'kms.unwrap',
    target: plainTarget(`data-key:${use.keyId} purpose:${use.purpose} kek-version:${use.kekVersion}`),
    result: 'ok',
  });
}

/** The deployment's own audit chain, for events that belong to no tenant, such as system key uses. */
export const SYSTEM_CHAIN = '_system';

/** Records a use of a system KEK (e.g. opening a secret at start-up) in the system chain. */
export function auditSystemKeyUse(core: Core, use: { keyName: string; subject: string; purpose: string; kekVersion: number }): Promise<void> {
  return auditRead(core, KEYRING, NO_REQUEST, {
    tenantId: SYSTEM_CHAIN,
    action: 'kms.unwrap',
    target: plainTarget(`${use.keyName} ${use.subject} purpose:${use.purpose} kek-version:${use.kekVersion}`),
    result: 'ok',
  });
}

const ANONYMOUS: Actor = { kind: 'system', name: 'unauthenticated' };

/**
 * Records a failed authentication against a tenant that exists, in its own chain, so the tenant
 * sees attempts on its data. `credential` names what was presented (an API key id, a token's
 * issuer), never a secret; `reason` is the verifier's, e.g. expired or bad_signature.
 */
export async function auditAuthFailure(core: Core, tenantId: string, meta: RequestMeta, credential: string, reason: string): Promise<void> {
  const tenant = await core.db.reader.selectFrom('tenants').select('status').where('id', '=', tenantId).executeTakeFirst();
  // A purged tenant has no audit log left to add to (the server's own log still has the attempt).
  if (!tenant || SHREDDED_STATUSES.includes(tenant.status)) return;
  await auditRead(core, ANONYMOUS, meta, { tenantId, action: 'auth.failed', target: plainTarget(`${credential} reason:${reason}`), result: 'denied' });
}
