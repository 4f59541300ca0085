import { pipeline, type Readable, type Writable } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { encodeAad } from '../../crypto/record-cipher.js';
import { createEncryptStream, encryptedSize } from '../../crypto/stream-cipher.js';
import { ConflictError, NotFoundError } from '../../errors.js';
import { authorize } from '../../policy/authorize.js';
import type { ExportsTable } from '../../store/db/tables.js';
import { auditInTx, auditRead, NO_REQUEST, plainTarget } from '../audit-events.js';
import { actorName, type Actor, type Core, type Principal, type RequestMeta } from '../context.js';
import { openSealedBlob, parseRange, type ByteRange } from '../files/file-reads.js';
import { tokenParts, tokenSigner, verifyToken } from '../files/signed-urls.js';
import { checkFormat, EXPORT_ID, newExportId, randomId } from '../ids.js';
import { tenantDataKey, tenantDataKeyById } from '../tenant-keys.js';
import { SHREDDED_STATUSES, tenantStatus } from '../tenants.js';
import { tenantArchive, type ArchiveSummary } from './export-archive.js';

/**
 * Tenant exports: an admin asks (`tenant.export`), the `exports.build` job writes the archive
 * (export-archive.ts) encrypted under the tenant's data key to `exports/<tenant>/<export>-<attempt>`,
 * and while it is ready a status read hands out a signed URL to download it, decrypted, whole or by
 * range. Every step is in the tenant's audit log. A purge deletes every `exports/<tenant>/` object and
 * destroys the tenant's KEK, so no copy outlives the tenant.
 */
const BUILDER: Actor = { kind: 'system', name: 'export' };

/** `x1.TENANT.EXPORT.EXPIRES.NONCE.MAC` under the tenant's signed-URL key (the file tokens start with `v1`). */
const EXPORT_TOKEN = /^x1\.(t_[a-z2-7]{16})\.(x_[a-z2-7]{16})\.([0-9]{10})\.([a-z2-7]{20})\.([A-Za-z0-9_-]{43})$/;

/** The archive's ciphertext is bound to its tenant, export and object key: moved anywhere, it fails to decrypt. */
const exportAad = (tenantId: string, exportId: string, objectKey: string) => encodeAad(['strongroom/export', tenantId, exportId, objectKey]);

const iso = (ms: number | null) => (ms === null ? null : new Date(Number(ms)).toISOString());
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

export interface ExportView {
  exportId: string;
  /** `building`, `ready`, `failed` or `expired`. */
  status: string;
  includeVersions: boolean;
  createdAt: string;
  readyAt: string | null;
  expiresAt: string | null;
  /** Size and SHA-256 (hex) of the archive, and the SHA-256 of its manifest, once ready. */
  size: number | null;
  sha256: string | null;
  manifestSha256: string | null;
  error: string | null;
  /** While ready: the path and query of a URL that downloads it without credentials, until `expiresAt`. */
  download: { path: string; expiresAt: string } | null;
}

function exportView(row: ExportsTable, download: ExportView['download'] = null): ExportView {
  return {
    exportId: row.export_id,
    status: row.status,
    includeVersions: row.include_versions === 1,
    createdAt: iso(row.created_at)!,
    readyAt: iso(row.ready_at),
    expiresAt: iso(row.expires_at),
    size: row.size === null ? null : Number(row.size),
    sha256: row.sha256,
    manifestSha256: row.manifest_sha256,
    error: row.error,
    download,
  };
}

/** A tenant that still has data to export: it exists and is not being purged or purged. */
async function requireExportable(core: Core, tenantId: string): Promise<void> {
  const status = await tenantStatus(core, tenantId);
  if (status === null) throw new NotFoundError('tenant not found');
  if (SHREDDED_STATUSES.includes(status)) throw new ConflictError(`the tenant is ${status}: nothing of it is left to export`);
}

/**
 * Asks for an export of everything the tenant holds (with every retained version if asked); the
 * archive is built in the background. One export is built at a time per tenant: a second request
 * while one is building gets 409, so a caller cannot pile up copies of the tenant's data.
 */
export async function requestExport(core: Core, principal: Principal, meta: RequestMeta, tenantId: string, request: { includeVersions?: boolean | undefined }): Promise<ExportView> {
  authorize(principal, 'tenant.export', { tenantId });
  await requireExportable(core, tenantId);
  const exportId = newExportId();
  const includeVersions = request.includeVersions === true;
  return core.committer.submit(tenantId, async (tx, batch) => {
    const building = await tx.selectFrom('exports').select('export_id').where('tenant_id', '=', tenantId).where('status', '=', 'building').executeTakeFirst();
    if (building) throw new ConflictError(`export ${building.export_id} is still being built`);
    const row: ExportsTable = {
      tenant_id: tenantId,
      export_id: exportId,
      status: 'building',
      include_versions: includeVersions ? 1 : 0,
      requested_by: actorName(principal),
      created_at: core.now(),
      ready_at: null,
      expires_at: null,
      object_key: null,
      key_id: null,
      size: null,
      sha256: null,
      manifest_sha256: null,
      error: null,
    };
    await tx.insertInto('exports').values(row).execute();
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: 'tenant.export', target: plainTarget(`export:${exportId}${includeVersions ? ' with versions' : ''}`), result: 'ok' });
    return exportView(row);
  });
}

/**
 * An export's status; while it is ready, with a signed URL that downloads it, valid for
 * `files.signedUrlMaxSeconds` and never past the export's own expiry. Audited as
 * `tenant.export_sign` when it hands out a URL, `tenant.export_read` otherwise.
 */
export async function getExport(core: Core, principal: Principal, meta: RequestMeta, tenantId: string, exportId: string): Promise<ExportView> {
  authorize(principal, 'tenant.export', { tenantId });
  checkFormat(exportId, EXPORT_ID, 'export id');
  const sign = await tokenSigner(core, tenantId, principal);
  const view = await core.committer.submit(tenantId, async (tx, batch) => {
    const row = await tx.selectFrom('exports').selectAll().where('tenant_id', '=', tenantId).where('export_id', '=', exportId).executeTakeFirst();
    const now = core.now();
    let download: ExportView['download'] = null;
    if (row?.status === 'ready' && Number(row.expires_at) > now) {
      const expires = Math.floor(Math.min(now + core.files.signedUrlMaxSeconds * 1000, Number(row.expires_at)) / 1000);
      download = { path: `/v1/signed/exports/${sign(['x1', tenantId, exportId, expires, randomId(12)].join('.'))}`, expiresAt: new Date(expires * 1000).toISOString() };
    }
    const target = plainTarget(`export:${exportId}${download ? ` until:${download.expiresAt}` : ''}`);
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: download ? 'tenant.export_sign' : 'tenant.export_read', target, result: row ? 'ok' : 'not_found' });
    return row && exportView(row, download);
  });
  if (!view) throw new NotFoundError('no such export');
  return view;
}

export interface ExportRead {
  exportId: string;
  size: number;
  sha256: string;
  range: ByteRange | null;
  body: Readable;
}

/**
 * Reads the archive a signed export URL names, decrypted, whole or the range asked for, if its MAC
 * verifies, it has not expired and the export is still ready. Every use is audited in the tenant's
 * log as `tenant.export_download`, in the name of the URL (`system:signed-url:NONCE`).
 */
export async function readSignedExport(core: Core, token: string, meta: RequestMeta, rangeHeader?: string): Promise<ExportRead> {
  const [, tenantId, exportId, expiresText, nonce] = tokenParts(EXPORT_TOKEN, token) as [string, string, string, string, string];
  const actor: Actor = { kind: 'system', name: `signed-url:${nonce}` };
  await verifyToken(core, tenantId, actor, token, Number(expiresText));
  const row = await core.db.reader.selectFrom('exports').selectAll().where('tenant_id', '=', tenantId).where('export_id', '=', exportId).executeTakeFirst();
  if (!row || row.status !== 'ready' || Number(row.expires_at) <= core.now()) throw new NotFoundError('the export this URL names is no longer available');
  const size = Number(row.size);
  const range = parseRange(rangeHeader, size);
  await auditRead(core, actor, meta, { tenantId, action: 'tenant.export_download', target: plainTarget(`export:${exportId}${range ? ` bytes:${range.start}-${range.end}` : ''}`), result: 'ok' });
  const key = await tenantDataKeyById(core, tenantId, Number(row.key_id), actor);
  const objectKey = row.object_key!;
  const body = await openSealedBlob(core, key, { objectKey, aad: exportAad(tenantId, exportId, objectKey), size, storedSize: encryptedSize(size) }, range);
  return { exportId, size, sha256: row.sha256!, range, body };
}

/**
 * Builds one export and records the outcome. A failure is recorded as `failed`; the tenant sees its
 * reason only when it is the tenant's own (a purge), operators see every reason in the job's log.
 * Returns null when built, or why not.
 */
async function buildExport(core: Core, row: Pick<ExportsTable, 'tenant_id' | 'export_id' | 'include_versions'>): Promise<string | null> {
  const { tenant_id: tenantId, export_id: exportId } = row;
  // A fresh object key per attempt: blobs are write-once, and a crashed attempt's copy is never overwritten.
  const objectKey = `exports/${tenantId}/${exportId}-${randomId(8)}`;
  const mark = (fields: Partial<ExportsTable>, audit: string, result: 'ok' | 'error') =>
    core.committer.submit(tenantId, async (tx, batch) => {
      const updated = await tx.updateTable('exports').set(fields).where('tenant_id', '=', tenantId).where('export_id', '=', exportId).where('status', '=', 'building').executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 0) return false;
      await auditInTx(tx, batch, core, BUILDER, NO_REQUEST, { tenantId, action: 'tenant.export_build', target: plainTarget(`export:${exportId} ${audit}`), result });
      return true;
    });
  try {
    await requireExportable(core, tenantId);
    const dataKey = await tenantDataKey(core, tenantId, BUILDER);
    const archive = tenantArchive(core, BUILDER, tenantId, { exportId, includeVersions: row.include_versions === 1 });
    const sealed = pipeline(archive.stream, createEncryptStream(dataKey, exportAad(tenantId, exportId, objectKey)), () => undefined);
    const [, summary] = await Promise.all([core.blobs.put(objectKey, sealed), archive.summary]);
    const now = core.now();
    const ready = {
      status: 'ready',
      ready_at: now,
      expires_at: now + core.lifecycle.exportRetentionMs,
      object_key: objectKey,
      key_id: dataKey.id,
      size: summary.size,
      sha256: summary.sha256,
      manifest_sha256: summary.manifestSha256,
    };
    // Another builder (an instance that lost its lease) may have finished first: then this copy is not needed.
    if (!(await mark(ready, `at sequence ${summary.manifest.seq}: ${summary.size} bytes, sha256 ${summary.sha256}`, 'ok'))) await core.blobs.delete(objectKey);
    return null;
  } catch (error) {
    const reason = error instanceof ConflictError ? error.message : 'the archive could not be built; ask for a new export';
    await mark({ status: 'failed', error: reason }, `failed: ${reason}`, 'error');
    // A put that failed left nothing; one that was stored before a later failure is removed.
    await core.blobs.delete(objectKey);
    return messageOf(error);
  }
}

/** The `exports.build` job: builds the exports asked for, oldest first, until `signal` aborts. */
export async function buildPendingExports(core: Core, signal?: AbortSignal): Promise<{ built: number; failures: string[] }> {
  const pending = await core.db.reader.selectFrom('exports').select(['tenant_id', 'export_id', 'include_versions']).where('status', '=', 'building').orderBy('created_at').limit(20).execute();
  const totals = { built: 0, failures: [] as string[] };
  for (const row of pending) {
    if (signal?.aborted) break;
    const failure = await buildExport(core, row);
    if (failure === null) totals.built += 1;
    else totals.failures.push(`${row.export_id}: ${failure}`);
  }
  return totals;
}

/** The `exports.expire` job: deletes the archives of exports past their expiry; each deletion is audited. */
export async function expireExports(core: Core): Promise<number> {
  const now = core.now();
  const due = await core.db.reader.selectFrom('exports').select(['tenant_id', 'export_id', 'object_key']).where('status', '=', 'ready').where('expires_at', '<=', now).limit(500).execute();
  for (const row of due) {
    await core.blobs.delete(row.object_key!);
    await core.committer.submit(row.tenant_id, async (tx, batch) => {
      const updated = await tx.updateTable('exports').set({ status: 'expired', object_key: null }).where('tenant_id', '=', row.tenant_id).where('export_id', '=', row.export_id).where('status', '=', 'ready').executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 0) return;
      await auditInTx(tx, batch, core, BUILDER, NO_REQUEST, { tenantId: row.tenant_id, action: 'tenant.export_expire', target: plainTarget(`export:${row.export_id}`), result: 'ok' });
    });
  }
  return due.length;
}

/**
 * Writes the tenant's archive to `out` on this machine (the CLI), audited in the tenant's log as
 * `tenant.export` by `actor` with the archive's digest.
 */
export async function exportToStream(core: Core, actor: Actor, meta: RequestMeta, tenantId: string, includeVersions: boolean, out: Writable): Promise<ArchiveSummary & { exportId: string }> {
  await requireExportable(core, tenantId);
  const exportId = newExportId();
  const archive = tenantArchive(core, actor, tenantId, { exportId, includeVersions });
  const [, summary] = await Promise.all([pipelineAsync(archive.stream, out), archive.summary]);
  await auditRead(core, actor, meta, {
    tenantId,
    action: 'tenant.export',
    target: plainTarget(`export:${exportId}${includeVersions ? ' with versions' : ''} to a local file at sequence ${summary.manifest.seq}: ${summary.size} bytes, sha256 ${summary.sha256}`),
    result: 'ok',
  });
  return { ...summary, exportId };
}
