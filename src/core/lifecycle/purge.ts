import { sql } from 'kysely';
import { ConflictError, NotFoundError, PreconditionFailedError } from '../../errors.js';
import { JOURNALED_TABLES } from '../../store/db/journaled-tables.js';
import type { Tables } from '../../store/db/tables.js';
import { authorize } from '../../policy/authorize.js';
import { auditInTx, NO_REQUEST, plainTarget, SYSTEM_CHAIN } from '../audit-events.js';
import type { Actor, Core, Principal } from '../context.js';
import { enqueueNotification } from '../notifications/outbox.js';
import { listSegments, openManifest, readSegmentHeader, timelineRanges } from '../recovery/catalog.js';
import { shippingStatus, shipThrough } from '../recovery/ship.js';
import { kekName } from '../tenant-keys.js';
import { signCertificate } from './certificate-keys.js';

const PURGER: Actor = { kind: 'system', name: 'lifecycle.purge' };
const HOUR = 3_600_000;

/** The blob prefixes that hold a tenant's objects: its files' versions and its export archives. */
export const tenantBlobPrefixes = (tenantId: string) => [`files/${tenantId}/`, `exports/${tenantId}/`];

/** What the tenant held when its purge began (it is read-only from its termination, so nothing is added after). */
export interface PurgeCounts {
  records: number;
  recordVersions: number;
  files: number;
  fileVersions: number;
  blobs: number;
  collections: number;
  members: number;
  apiKeys: number;
  auditEvents: number;
}

export type PurgeStep = 'started' | 'shipped' | 'key-scheduled' | 'blobs-deleted' | 'rows-deleted' | 'waiting-for-key-destruction' | 'purged';

async function countRows(core: Core, table: keyof Tables & string, tenantId: string, where = sql``): Promise<number> {
  const row = (await sql<{ n: number | string }>`select count(*) as n from ${sql.table(table)} where tenant_id = ${tenantId} ${where}`.execute(core.db.reader)).rows[0];
  return Number(row?.n ?? 0);
}

async function countsOf(core: Core, tenantId: string): Promise<PurgeCounts> {
  const blobs = (
    await sql<{ n: number | string }>`select count(distinct object_key) as n from file_versions where tenant_id = ${tenantId} and object_key is not null`.execute(core.db.reader)
  ).rows[0];
  return {
    records: await countRows(core, 'records', tenantId, sql`and deleted = 0`),
    recordVersions: await countRows(core, 'record_versions', tenantId),
    files: await countRows(core, 'files', tenantId),
    fileVersions: await countRows(core, 'file_versions', tenantId),
    blobs: Number(blobs?.n ?? 0),
    collections: await countRows(core, 'collections', tenantId),
    members: await countRows(core, 'members', tenantId),
    apiKeys: await countRows(core, 'api_keys', tenantId),
    auditEvents: await countRows(core, 'audit_events', tenantId),
  };
}

/** Tenants whose purge is due by the database's clock (terminated, purge date passed) or under way. */
export async function duePurges(core: Core): Promise<string[]> {
  const now = await core.databaseNow();
  const rows = await core.db.reader
    .selectFrom('tenants')
    .select('id')
    .where((eb) => eb.or([eb('status', '=', 'purging'), eb.and([eb('status', '=', 'terminated'), eb('purge_after', '<=', now)])]))
    .orderBy('id')
    .execute();
  return rows.map((r) => r.id);
}

/**
 * Purges one tenant whose purge date has passed, by the database's clock. Each step is idempotent
 * and recorded, so a purge cut short (kill -9, a replica or the KMS away) finishes on the next run:
 *
 * 1. The tenant becomes `purging` (no access at all) and what it holds is counted.
 * 2. Every change-log entry so far is shipped: once its key is scheduled for destruction nothing
 *    more of the tenant can be sealed under it.
 * 3. The destruction of every version of its KEK is scheduled in the KMS, and cached data keys are
 *    dropped. From here no copy of its data anywhere (rows, blobs, backups, segments) can be read.
 * 4. Its blobs are deleted on every backend; 5. its rows, in every table (its owners' sign-in
 *    links stay, without their e-mail addresses, so they can fetch the certificate).
 * 6. Once the KMS reports every version destroyed, the signed deletion certificate is issued and
 *    the tenant is `purged`.
 *
 * The purge's own writes are journaled in the system's chain: the tenant's key cannot seal them.
 */
export async function purgeTenant(core: Core, tenantId: string, onStep: (step: PurgeStep) => void = () => undefined): Promise<PurgeStep> {
  const tenant = await core.db.reader.selectFrom('tenants').selectAll().where('id', '=', tenantId).executeTakeFirst();
  if (!tenant) throw new NotFoundError('tenant not found');
  if (tenant.status === 'purged') return 'purged';
  if (tenant.status === 'terminated') {
    const now = await core.databaseNow();
    if (tenant.purge_after === null || now < Number(tenant.purge_after)) throw new PreconditionFailedError(`the purge of ${tenantId} is not due before ${new Date(Number(tenant.purge_after)).toISOString()}`);
    const counts = await countsOf(core, tenantId);
    await core.committer.submit(SYSTEM_CHAIN, async (tx, batch) => {
      const current = await tx.selectFrom('tenants').select('status').where('id', '=', tenantId).executeTakeFirstOrThrow();
      // Another run (the CLI beside the server's job) began first: go on from its record.
      if (current.status === 'purging') return;
      if (current.status !== 'terminated') throw new ConflictError(`the tenant is ${current.status}`);
      await tx.updateTable('tenants').set({ status: 'purging' }).where('id', '=', tenantId).execute();
      await tx.deleteFrom('tenant_purges').where('tenant_id', '=', tenantId).execute();
      await tx.insertInto('tenant_purges').values({ tenant_id: tenantId, started_at: now, counts: JSON.stringify(counts), requested_by: tenant.terminated_by }).execute();
      await auditInTx(tx, batch, core, PURGER, NO_REQUEST, { tenantId: SYSTEM_CHAIN, action: 'tenant.purge', target: plainTarget(`tenant:${tenantId} started`), result: 'ok' });
    });
    onStep('started');
  } else if (tenant.status !== 'purging') {
    throw new ConflictError(`the tenant is ${tenant.status}: only a terminated tenant is purged`);
  }
  let purge = await core.db.reader.selectFrom('tenant_purges').selectAll().where('tenant_id', '=', tenantId).executeTakeFirstOrThrow();

  if (purge.kek_scheduled_at === null) {
    await shipThrough(core, (await shippingStatus(core)).journalSeq);
    onStep('shipped');
    const versions = await core.kms.listKeyVersions(kekName(tenantId));
    const destroyAt = await core.kms.scheduleKeyDestruction(kekName(tenantId));
    const scheduledAt = core.now();
    await core.committer.submit(SYSTEM_CHAIN, async (tx, batch) => {
      const kekVersions = versions.map((v) => ({ version: v.version, createdAt: v.createdAt.toISOString() }));
      await tx.updateTable('tenant_purges').set({ kek_versions: JSON.stringify(kekVersions), kek_scheduled_at: scheduledAt, kek_destroy_at: destroyAt.getTime() }).where('tenant_id', '=', tenantId).execute();
      await auditInTx(tx, batch, core, PURGER, NO_REQUEST, {
        tenantId: SYSTEM_CHAIN,
        action: 'tenant.purge',
        target: plainTarget(`tenant:${tenantId} key ${kekName(tenantId)} versions ${versions.map((v) => v.version).join(',')} scheduled for destruction at ${destroyAt.toISOString()}`),
        result: 'ok',
      });
    });
    onStep('key-scheduled');
  }
  // Scheduled now, or by an earlier run (maybe on another instance): no cached data key outlives it here.
  core.keyring.evictTenant(tenantId);
  core.currentDataKeys.forget(tenantId);

  await deleteBlobs(core, tenantId);
  onStep('blobs-deleted');
  await deleteRows(core, tenantId);
  onStep('rows-deleted');

  await core.kms.destroyDueVersions();
  const states = await core.kms.listKeyVersions(kekName(tenantId));
  if (!states.every((v) => v.state === 'destroyed')) {
    onStep('waiting-for-key-destruction');
    return 'waiting-for-key-destruction';
  }
  purge = await core.db.reader.selectFrom('tenant_purges').selectAll().where('tenant_id', '=', tenantId).executeTakeFirstOrThrow();
  const purgedAt = await core.databaseNow();
  const certificate = await signCertificate(core, await certificateDocument(core, tenant, purge, purgedAt));
  await core.committer.submit(SYSTEM_CHAIN, async (tx, batch) => {
    await tx.updateTable('tenant_purges').set({ finished_at: purgedAt, certificate }).where('tenant_id', '=', tenantId).execute();
    await tx.updateTable('tenants').set({ status: 'purged', purged_at: purgedAt }).where('id', '=', tenantId).execute();
    await auditInTx(tx, batch, core, PURGER, NO_REQUEST, { tenantId: SYSTEM_CHAIN, action: 'tenant.purge', target: plainTarget(`tenant:${tenantId} purged`), result: 'ok' });
    // The tenant's own contacts are gone with its key: the operators are told, and the owners fetch the certificate.
    await enqueueNotification(tx, purgedAt, { tenantId: null, event: 'tenant.purged', payload: { tenantId, occurredAt: purgedAt } });
  });
  onStep('purged');
  return 'purged';
}

async function deleteBlobs(core: Core, tenantId: string): Promise<void> {
  for (const backend of core.blobs.backends) {
    for (const prefix of tenantBlobPrefixes(tenantId)) {
      const keys: string[] = [];
      for await (const key of backend.list(prefix)) keys.push(key);
      for (const key of keys) await backend.delete(key);
    }
  }
}

/** Tables outside the journal's list that still name the tenant. */
const WORKING_TABLES = ['tenant_heads', 'outbox', 'signed_url_uses', 'exports'] as const;

async function deleteRows(core: Core, tenantId: string): Promise<void> {
  // One statement per table: the journal holds the statement, not the rows it deleted.
  const deletes = JOURNALED_TABLES.filter((t) => t.name !== 'tenants' && t.name !== 'members');
  for (const table of deletes) {
    await core.committer.submit(SYSTEM_CHAIN, (tx) => sql`delete from ${sql.table(table.name)} where ${sql.ref(table.tenantColumn)} = ${tenantId}`.execute(tx));
  }
  await core.committer.submit(SYSTEM_CHAIN, async (tx) => {
    await tx.deleteFrom('members').where('tenant_id', '=', tenantId).where((eb) => eb.or([eb('role', '!=', 'owner'), eb('status', '!=', 'active')])).execute();
    await tx.updateTable('members').set({ email_enc: null, email_token: null }).where('tenant_id', '=', tenantId).execute();
    await tx.deleteFrom('delivery_attempts').where('delivery_id', 'in', (eb) => eb.selectFrom('deliveries').select('delivery_id').where('tenant_id', '=', tenantId)).execute();
    await tx.deleteFrom('deliveries').where('tenant_id', '=', tenantId).execute();
    for (const table of WORKING_TABLES) await tx.deleteFrom(table).where('tenant_id', '=', tenantId).execute();
    for (const prefix of tenantBlobPrefixes(tenantId)) await tx.deleteFrom('blob_repairs').where('object_key', 'like', `${prefix}%`).execute();
  });
}

/** The recovery store's copies that still hold the tenant's ciphertext, and when retention removes them. */
async function remainingCopies(core: Core, tenantId: string) {
  const { ageOut } = core.lifecycle;
  const { timeline } = await core.db.reader.selectFrom('journal_head').select('timeline').where('id', '=', 1).executeTakeFirstOrThrow();
  const backups: { backupId: string; takenAt: string; agesOutBy: string }[] = [];
  const stored = await core.db.reader.selectFrom('backups').select(['backup_id', 'timeline']).where('pruned_at', 'is', null).orderBy('seq').execute();
  for (const row of stored) {
    const { manifest } = await openManifest(core, row.timeline, row.backup_id);
    if (!manifest.parts.some((p) => p.name === tenantId)) continue;
    backups.push({ backupId: manifest.backupId, takenAt: new Date(manifest.takenAt).toISOString(), agesOutBy: new Date(manifest.takenAt + ageOut.backupRetentionMs).toISOString() });
  }
  const segments: { object: string; first: number; last: number; agesOutBy: string }[] = [];
  for (const range of await timelineRanges(core, timeline)) {
    for (const { key } of await listSegments(core, range.timeline)) {
      const header = await readSegmentHeader(core.blobs, key);
      if (!header.chunks.some((c) => c.tenant === tenantId)) continue;
      // A segment goes once a backup taken after it has left the window: the next backup, that much later.
      segments.push({ object: key, first: header.first, last: header.last, agesOutBy: new Date(header.lastAt + ageOut.backupIntervalMs + ageOut.segmentRetentionMs).toISOString() });
    }
  }
  return { backups, segments };
}

async function certificateDocument(
  core: Core,
  tenant: Tables['tenants'],
  purge: Tables['tenant_purges'],
  purgedAt: number,
): Promise<Record<string, unknown>> {
  const iso = (ms: number | null) => (ms === null ? null : new Date(Number(ms)).toISOString());
  const copies = await remainingCopies(core, tenant.id);
  const lastAgeOut = [...copies.backups, ...copies.segments].map((c) => c.agesOutBy).sort().at(-1) ?? null;
  return {
    type: 'strongroom.deletion-certificate',
    version: 1,
    tenantId: tenant.id,
    terminatedAt: iso(tenant.terminated_at),
    terminatedBy: purge.requested_by,
    purgeDueAt: iso(tenant.purge_after),
    purgeStartedAt: iso(purge.started_at),
    purgedAt: iso(purgedAt),
    deleted: JSON.parse(purge.counts) as PurgeCounts,
    keyEncryptionKey: {
      name: kekName(tenant.id),
      provider: core.kms.provider,
      destructionScheduledAt: iso(purge.kek_scheduled_at),
      // The KMS destroys the material once its waiting period is over; the purge checked it had, before signing.
      destructionDueAt: iso(purge.kek_destroy_at),
      versions: (JSON.parse(purge.kek_versions ?? '[]') as { version: number; createdAt: string }[]).map((v) => ({ ...v, state: 'destroyed', destroyedNoLaterThan: iso(purgedAt) })),
    },
    remainingCiphertext: {
      explanation: 'These copies in the recovery store still hold the tenant\'s data, sealed under data keys that only the destroyed key-encryption key could unwrap: none of it can be decrypted. Retention removes them by the dates given.',
      backups: copies.backups,
      segments: copies.segments,
      allGoneBy: lastAgeOut,
    },
    issuedAt: iso(purgedAt),
  };
}

/** The deletion certificate of a purged tenant (a compact JWS), for its owners and the operators. */
export async function deletionCertificate(core: Core, principal: Principal, tenantId: string): Promise<string> {
  authorize(principal, 'tenant.certificate', { tenantId });
  return storedCertificate(core, tenantId);
}

/** The certificate as stored, for the machine's operator (the CLI). */
export async function storedCertificate(core: Core, tenantId: string): Promise<string> {
  const row = await core.db.reader.selectFrom('tenant_purges').select('certificate').where('tenant_id', '=', tenantId).executeTakeFirst();
  if (!row?.certificate) throw new NotFoundError('no deletion certificate: the tenant is not purged');
  return row.certificate;
}

/**
 * Evidence for the promise: terminated tenants past their purge date that are not purged. A purge
 * under way is allowed the KMS's waiting period and an hour of grace; anything else is overdue.
 */
export async function overduePurges(core: Core): Promise<{ tenantId: string; status: string; purgeDueAt: string }[]> {
  const now = await core.databaseNow();
  const late = now - core.lifecycle.destroyWaitMs - HOUR;
  const rows = await core.db.reader
    .selectFrom('tenants')
    .select(['id', 'status', 'purge_after'])
    .where('status', 'in', ['terminated', 'purging'])
    .where('purge_after', '<=', late)
    .orderBy('purge_after')
    .execute();
  return rows.map((r) => ({ tenantId: r.id, status: r.status, purgeDueAt: new Date(Number(r.purge_after)).toISOString() }));
}

/** The evidence, for operators. */
export async function purgeEvidence(core: Core, principal: Principal): Promise<{ overduePurges: Awaited<ReturnType<typeof overduePurges>> }> {
  authorize(principal, 'ops.read', { tenantId: null });
  return { overduePurges: await overduePurges(core) };
}

/** How long before its purge a terminated tenant's owners are reminded of it, while they can still export. */
export const PURGE_REMINDER_MS = 7 * 24 * HOUR;

/**
 * Tells the owners of each terminated tenant whose purge is within PURGE_REMINDER_MS, once
 * (`tenant.purge_scheduled`, by e-mail and to the tenant's webhooks): the last call to export.
 */
export async function remindDuePurges(core: Core): Promise<number> {
  const now = await core.databaseNow();
  const due = await core.db.reader
    .selectFrom('tenants')
    .select(['id', 'purge_after'])
    .where('status', '=', 'terminated')
    .where('purge_reminded_at', 'is', null)
    .where('purge_after', '<=', now + PURGE_REMINDER_MS)
    .execute();
  for (const tenant of due) {
    await core.committer.submit(tenant.id, async (tx, batch) => {
      const updated = await tx.updateTable('tenants').set({ purge_reminded_at: now }).where('id', '=', tenant.id).where('status', '=', 'terminated').where('purge_reminded_at', 'is', null).executeTakeFirst();
      if (updated.numUpdatedRows === 0n) return;
      const purgeAt = Number(tenant.purge_after);
      await enqueueNotification(tx, now, { tenantId: tenant.id, event: 'tenant.purge_scheduled', payload: { occurredAt: now, purgeAt } });
      await auditInTx(tx, batch, core, PURGER, NO_REQUEST, { tenantId: tenant.id, action: 'tenant.purge_reminder', target: plainTarget(`tenant:${tenant.id} purge at ${new Date(purgeAt).toISOString()}`), result: 'ok' });
    });
  }
  return due.length;
}

/** Reminds the owners of purges that are near, then runs every due purge once; one that fails is retried on the next run. */
export async function runDuePurges(core: Core): Promise<string> {
  const reminded = await remindDuePurges(core);
  const results: string[] = reminded > 0 ? [`the owners of ${reminded} tenants reminded of their purge`] : [];
  for (const tenantId of await duePurges(core)) {
    try {
      results.push(`${tenantId}: ${await purgeTenant(core, tenantId)}`);
    } catch (error) {
      results.push(`${tenantId}: failed (${error instanceof Error ? error.message : String(error)})`);
    }
  }
  if (results.some((r) => r.includes(': failed'))) throw new Error(results.join('; '));
  return results.length === 0 ? 'no purge due' : results.join('; ');
}
