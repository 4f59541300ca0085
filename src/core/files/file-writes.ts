import { createHash, timingSafeEqual } from 'node:crypto';
import { Transform, pipeline, type Readable } from 'node:stream';
import { createEncryptStream } from '../../crypto/stream-cipher.js';
import { sealRecord, type DataKey } from '../../crypto/record-cipher.js';
import { BadRequestError, NotFoundError, PayloadTooLargeError } from '../../errors.js';
import { authorize } from '../../policy/authorize.js';
import type { StoredObject } from '../../store/blob/blob-store.js';
import type { BatchState, Tx } from '../../store/db/group-commit.js';
import { auditInTx, sealedTarget } from '../audit-events.js';
import type { Core, Principal, RequestMeta } from '../context.js';
import { randomId } from '../ids.js';
import { tenantDataKey } from '../tenant-keys.js';
import { fileAad, fileMetaAad, folderToken, foldersOf } from './file-paths.js';
import { checkContentType, fileKeys, fileView, openMeta, type FileAddress, type FileMeta, type FileView } from './file-rows.js';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** A stream that counts and hashes what passes, and fails past `maxBytes` (so a body with no length is bounded too). */
export function meter(maxBytes = Number.POSITIVE_INFINITY) {
  const hash = createHash('sha256');
  let size = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      if (size > maxBytes) return callback(new PayloadTooLargeError(`a file may hold at most ${maxBytes} bytes`));
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  return { stream, result: () => ({ size, sha256: hash.digest('hex') }) };
}

/** Object keys are fresh for every upload: blobs are write-once, so replication and repair never race an overwrite. */
const newObjectKey = (tenantId: string) => `files/${tenantId}/${randomId(20)}`;

const fileTarget = (key: DataKey, tenantId: string, path: string, version: number, extra = '') => sealedTarget(key, tenantId, `file:${path} v${version}${extra}`);

/** The change-log payload of a file version: the blob it points to, its digest and size, and the sealed metadata. */

interface NewVersion {
  op: 'put' | 'delete';
  objectKey: string | null;
  size: number;
  stored: StoredObject;
  meta: FileMeta;
}

/**
 * Makes `next` the file's current version, in the caller's transaction: the previous version
 * becomes non-current (its retention starts), folder tokens exist, the change log and the audit log
 * say what happened.
 */
async function commitVersion(
  core: Core,
  tx: Tx,
  batch: BatchState,
  principal: Principal,
  meta: RequestMeta,
  at: { tenantId: string; pathKey: Buffer; folderKey: Buffer; dataKey: DataKey },
  next: NewVersion,
  audit: { action: string; extra?: string },
): Promise<FileView> {
  const { tenantId, pathKey, dataKey } = at;
  const now = core.now();
  const current = await tx.selectFrom('files').select(['version', 'deleted']).where('tenant_id', '=', tenantId).where('path_key', '=', pathKey).executeTakeFirst();
  if (next.op === 'delete' && (!current || current.deleted !== 0)) throw new NotFoundError('file not found');
  const version = (current ? Number(current.version) : 0) + 1;
  const metaEnc = sealRecord(dataKey, fileMetaAad(tenantId, pathKey, version), Buffer.from(JSON.stringify(next.meta), 'utf8'));
  const deleted = next.op === 'delete' ? 1 : 0;
  if (current) {
    await tx.updateTable('files').set({ version, deleted, updated_at: now }).where('tenant_id', '=', tenantId).where('path_key', '=', pathKey).execute();
    await tx
      .updateTable('file_versions')
      .set({ noncurrent_since: now })
      .where('tenant_id', '=', tenantId)
      .where('path_key', '=', pathKey)
      .where('version', '=', Number(current.version))
      .execute();
  } else {
    await tx.insertInto('files').values({ tenant_id: tenantId, path_key: pathKey, version, deleted, created_at: now, updated_at: now }).execute();
    const folders = foldersOf(next.meta.path).map((folder) => ({ tenant_id: tenantId, folder_token: folderToken(at.folderKey, folder), path_key: pathKey }));
    if (folders.length > 0) await tx.insertInto('file_folders').values(folders).execute();
  }
  await tx
    .insertInto('file_versions')
    .values({
      tenant_id: tenantId,
      path_key: pathKey,
      version,
      op: next.op,
      object_key: next.objectKey,
      size: next.size,
      stored_size: next.stored.size,
      stored_sha256: next.objectKey === null ? null : next.stored.sha256,
      meta_enc: metaEnc,
      created_at: now,
      noncurrent_since: null,
    })
    .execute();
  await auditInTx(tx, batch, core, principal, meta, { tenantId, action: audit.action, target: fileTarget(dataKey, tenantId, next.meta.path, version, audit.extra), result: 'ok' });
  return fileView(next.meta, { version, size: next.size, created_at: now });
}

export interface PutFileOptions {
  contentType: string;
  /** SHA-256 (hex) the client says the body has: a body that differs is refused and nothing is kept. */
  sha256?: string | undefined;
}

/**
 * Streams a body into a new version of the file: encrypted on the way in (64 KiB segments, a key
 * derived per file), stored on the primary and the replica, then recorded in one transaction with
 * its change-log entry and audit event. Memory stays flat whatever the size.
 */
export async function putFile(core: Core, principal: Principal, meta: RequestMeta, address: FileAddress, body: Readable, options: PutFileOptions): Promise<FileView> {
  const { tenantId, path } = address;
  authorize(principal, 'files.write', { tenantId });
  checkContentType(options.contentType);
  if (options.sha256 !== undefined && !SHA256_HEX.test(options.sha256)) throw new BadRequestError('Content-SHA256 must be 64 lower-case hex digits');
  const keys = await fileKeys(core, tenantId, principal);
  const pathKey = keys.pathKey(path);
  const dataKey = await tenantDataKey(core, tenantId, principal);
  const objectKey = newObjectKey(tenantId);
  const plain = meter(core.files.maxBytes);
  const sealed = pipeline(body, plain.stream, createEncryptStream(dataKey, fileAad(tenantId, pathKey, objectKey)), () => {});
  const stored = await core.blobs.put(objectKey, sealed);
  const { size, sha256 } = plain.result();
  try {
    if (options.sha256 !== undefined && !timingSafeEqual(Buffer.from(options.sha256, 'hex'), Buffer.from(sha256, 'hex'))) {
      throw new BadRequestError('the body does not match its Content-SHA256');
    }
    const fileMeta: FileMeta = { path, contentType: options.contentType, sha256 };
    return await core.committer.submit(tenantId, (tx, batch) =>
      commitVersion(core, tx, batch, principal, meta, { tenantId, pathKey, folderKey: keys.folderKey, dataKey }, { op: 'put', objectKey, size, stored, meta: fileMeta }, { action: 'file.put' }),
    );
  } catch (error) {
    // Nothing refers to the blob: remove it (a failure here leaves an orphan no version points to).
    await core.blobs.delete(objectKey).catch(() => undefined);
    throw error;
  }
}

/** Soft delete: a tombstone version. Earlier versions stay readable, and restorable, for the retention window. */
export async function deleteFile(core: Core, principal: Principal, meta: RequestMeta, address: FileAddress): Promise<{ version: number }> {
  const { tenantId, path } = address;
  authorize(principal, 'files.write', { tenantId });
  const keys = await fileKeys(core, tenantId, principal);
  const pathKey = keys.pathKey(path);
  const dataKey = await tenantDataKey(core, tenantId, principal);
  const tombstone: NewVersion = { op: 'delete', objectKey: null, size: 0, stored: { size: 0, sha256: '' }, meta: { path, contentType: '', sha256: '' } };
  const view = await core.committer.submit(tenantId, (tx, batch) =>
    commitVersion(core, tx, batch, principal, meta, { tenantId, pathKey, folderKey: keys.folderKey, dataKey }, tombstone, { action: 'file.delete' }),
  );
  return { version: view.version };
}

/**
 * Makes an earlier version current again as a new version pointing at the same blob: an undelete,
 * or a rollback. Without `version`, the newest version that holds content.
 */
export async function restoreFile(core: Core, principal: Principal, meta: RequestMeta, address: FileAddress, version?: number): Promise<FileView> {
  const { tenantId, path } = address;
  authorize(principal, 'files.write', { tenantId });
  const keys = await fileKeys(core, tenantId, principal);
  const pathKey = keys.pathKey(path);
  const dataKey = await tenantDataKey(core, tenantId, principal);
  let query = core.db.reader
    .selectFrom('file_versions')
    .select(['version', 'object_key', 'size', 'stored_size', 'stored_sha256', 'meta_enc', 'path_key'])
    .where('tenant_id', '=', tenantId)
    .where('path_key', '=', pathKey)
    .where('op', '=', 'put');
  if (version !== undefined) query = query.where('version', '=', version);
  const source = await query.orderBy('version', 'desc').executeTakeFirst();
  if (!source) throw new NotFoundError(version === undefined ? 'file not found' : 'no such version with content (deleted versions cannot be restored)');
  // Opened before the transaction: a key fetch may need the KMS, whose use is itself audited.
  const next: NewVersion = {
    op: 'put',
    objectKey: source.object_key,
    size: Number(source.size),
    stored: { size: Number(source.stored_size), sha256: source.stored_sha256! },
    meta: await openMeta(core, principal, tenantId, source),
  };
  return core.committer.submit(tenantId, async (tx, batch) => {
    // The retention job may have removed the version meanwhile; its blob would be going too.
    const still = await tx.selectFrom('file_versions').select('version').where('tenant_id', '=', tenantId).where('path_key', '=', pathKey).where('version', '=', source.version).executeTakeFirst();
    if (!still) throw new NotFoundError('that version has just expired');
    return commitVersion(core, tx, batch, principal, meta, { tenantId, pathKey, folderKey: keys.folderKey, dataKey }, next, { action: 'file.restore', extra: ` from v${Number(source.version)}` });
  });
}
