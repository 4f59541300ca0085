import { once } from 'node:events';
import { PassThrough, Transform, pipeline, type Readable } from 'node:stream';
import { recordKeyId, type DataKey } from '../../crypto/record-cipher.js';
import { createDecryptStream, SEGMENT_SIZE, segmentOffset, STREAM_HEADER_LENGTH } from '../../crypto/stream-cipher.js';
import { BadRequestError, NotFoundError, RangeNotSatisfiableError } from '../../errors.js';
import { authorize } from '../../policy/authorize.js';
import type { FileVersionsTable } from '../../store/db/tables.js';
import { auditInTx, auditRead, sealedTarget } from '../audit-events.js';
import type { Actor, Core, Principal, RequestMeta } from '../context.js';
import { tenantDataKey, tenantDataKeyById } from '../tenant-keys.js';
import { checkPrefix, fileAad, folderOfPrefix, folderToken } from './file-paths.js';
import { FILE_VERSION_COLUMNS, fileKeys, fileView, openMeta, type FileAddress, type FileVersionView, type FileView } from './file-rows.js';

type VersionRow = Pick<FileVersionsTable, (typeof FILE_VERSION_COLUMNS)[number]>;

/** An inclusive byte range of the plaintext. */
export interface ByteRange {
  start: number;
  end: number;
}

/** `bytes=a-b`, `bytes=a-` or `bytes=-n`; one range only. Null when there is no Range header. */
export function parseRange(header: string | undefined, size: number): ByteRange | null {
  if (header === undefined) return null;
  const match = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) throw new BadRequestError('Range must be one range: bytes=START-END, bytes=START- or bytes=-SUFFIX');
  const [first, last] = [match[1]!, match[2]!];
  const range = first === '' ? { start: Math.max(0, size - Number(last)), end: size - 1 } : { start: Number(first), end: last === '' ? size - 1 : Math.min(Number(last), size - 1) };
  if (range.start > range.end || range.start >= size) throw new RangeNotSatisfiableError(size);
  return range;
}

/**
 * The version a read addresses: the current one, or the one asked for. Read inside the transaction
 * of its audit event, so what is audited is exactly what is returned.
 */
async function findVersion(core: Core, principal: Principal, meta: RequestMeta, address: FileAddress, pathKey: Buffer, version: number | undefined, action: string): Promise<VersionRow> {
  const { tenantId } = address;
  const dataKey = await tenantDataKey(core, tenantId, principal);
  const row = await core.committer.submit(tenantId, async (tx, batch) => {
    let wanted = version;
    if (wanted === undefined) {
      const file = await tx.selectFrom('files').select(['version', 'deleted']).where('tenant_id', '=', tenantId).where('path_key', '=', pathKey).executeTakeFirst();
      wanted = file && file.deleted === 0 ? Number(file.version) : undefined;
    }
    const found =
      wanted === undefined
        ? undefined
        : await tx.selectFrom('file_versions').select(FILE_VERSION_COLUMNS).where('tenant_id', '=', tenantId).where('path_key', '=', pathKey).where('version', '=', wanted).where('op', '=', 'put').executeTakeFirst();
    const target = sealedTarget(dataKey, tenantId, `file:${address.path}${version === undefined ? '' : ` v${version}`}`);
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action, target, result: found ? 'ok' : 'not_found' });
    return found;
  });
  if (!row) throw new NotFoundError(version === undefined ? 'file not found' : 'no such version of the file');
  return row;
}

/** Passes on `length` bytes after skipping `skip`: a range cut out of whole decrypted segments. */
function slice(skip: number, length: number): Transform {
  let position = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const from = Math.max(0, skip - position);
      const to = Math.min(chunk.length, skip + length - position);
      position += chunk.length;
      callback(null, from < to ? chunk.subarray(from, to) : undefined);
    },
  });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** A blob written by createEncryptStream: where it is, the AAD it is bound to, its plaintext and stored sizes. */
export interface SealedBlob {
  objectKey: string;
  aad: Buffer;
  size: number;
  storedSize: number;
}

/**
 * The decrypted bytes of a sealed blob, whole or a range: only the segments that hold the range are
 * fetched. The stream is returned once its first segment authenticated, so a blob whose header or
 * first segment was tampered with fails before any byte is sent; a later bad segment ends the
 * stream with an IntegrityError, never wrong bytes.
 */
export async function openSealedBlob(core: Core, key: DataKey, blob: SealedBlob, range: ByteRange | null): Promise<Readable> {
  const { objectKey, aad } = blob;
  let output: Readable;
  if (range === null) {
    output = pipeline(await core.blobs.get(objectKey), createDecryptStream(key, aad), () => {});
  } else {
    const firstSegment = Math.floor(range.start / SEGMENT_SIZE);
    const endSegment = Math.floor(range.end / SEGMENT_SIZE);
    const header = await readAll(await core.blobs.get(objectKey, { start: 0, end: STREAM_HEADER_LENGTH - 1 }));
    const stored = { start: segmentOffset(firstSegment), end: Math.min(segmentOffset(endSegment + 1), blob.storedSize) - 1 };
    const decrypt = createDecryptStream(key, aad, { header, plainSize: blob.size, firstSegment, endSegment });
    output = pipeline(await core.blobs.get(objectKey, stored), decrypt, slice(range.start - firstSegment * SEGMENT_SIZE, range.end - range.start + 1), () => {});
  }
  return primed(output);
}

/** The decrypted bytes of a file version, whole or a range. */
export async function decryptedStream(core: Core, caller: Actor, tenantId: string, row: VersionRow, range: ByteRange | null): Promise<Readable> {
  const objectKey = row.object_key!;
  const key = await tenantDataKeyById(core, tenantId, recordKeyId(row.meta_enc), caller);
  return openSealedBlob(core, key, { objectKey, aad: fileAad(tenantId, row.path_key, objectKey), size: Number(row.size), storedSize: Number(row.stored_size) }, range);
}

/** Waits for the stream's first chunk (or its end or error) and hands back a stream that starts with it. */
async function primed(stream: Readable): Promise<Readable> {
  const out = new PassThrough();
  const first = await Promise.race([once(stream, 'readable').then(() => stream.read() as Buffer | null), once(stream, 'end').then(() => null)]);
  if (first !== null) out.write(first);
  return pipeline(stream, out, () => {});
}

export interface FileRead {
  file: FileView;
  range: ByteRange | null;
  body: Readable;
}

/** Reads a file (or one of its versions), whole or a byte range given as a Range header. */
export async function getFile(core: Core, principal: Principal, meta: RequestMeta, address: FileAddress, options: { version?: number | undefined; range?: string | undefined } = {}): Promise<FileRead> {
  const { tenantId } = address;
  authorize(principal, 'files.read', { tenantId });
  const keys = await fileKeys(core, tenantId, principal);
  const row = await findVersion(core, principal, meta, address, keys.pathKey(address.path), options.version, 'file.get');
  const file = fileView(await openMeta(core, principal, tenantId, row), row);
  const range = parseRange(options.range, file.size);
  return { file, range, body: await decryptedStream(core, principal, tenantId, row, range) };
}

/** A file's metadata, without its bytes. */
export async function headFile(core: Core, principal: Principal, meta: RequestMeta, address: FileAddress, version?: number): Promise<FileView> {
  const { tenantId } = address;
  authorize(principal, 'files.read', { tenantId });
  const keys = await fileKeys(core, tenantId, principal);
  const row = await findVersion(core, principal, meta, address, keys.pathKey(address.path), version, 'file.head');
  return fileView(await openMeta(core, principal, tenantId, row), row);
}

const CURSOR = /^[A-Za-z0-9_-]{43}$/;

/**
 * Lists current files whose path starts with `prefix`, in path-key order (names are encrypted, so
 * not alphabetical). The folder the prefix lies in is found through its blind token; names in it are
 * decrypted and compared, so only that folder's files are read.
 */
export async function listFiles(
  core: Core,
  principal: Principal,
  meta: RequestMeta,
  tenantId: string,
  query: { prefix?: string | undefined; cursor?: string | undefined; limit?: number | undefined },
): Promise<{ files: FileView[]; nextCursor: string | null }> {
  authorize(principal, 'files.read', { tenantId });
  const prefix = checkPrefix(query.prefix ?? '');
  if (query.cursor !== undefined && !CURSOR.test(query.cursor)) throw new BadRequestError('invalid cursor');
  let after: Buffer | undefined = query.cursor === undefined ? undefined : Buffer.from(query.cursor, 'base64url');
  const limit = Math.min(query.limit ?? core.limits.defaultPageSize, core.limits.maxPageSize);
  const keys = await fileKeys(core, tenantId, principal);
  const folder = folderOfPrefix(prefix);
  const found: { view: FileView; key: Buffer }[] = [];
  let exhausted = false;
  while (found.length <= limit && !exhausted) {
    const batchSize = limit + 1 - found.length;
    let q = core.db.reader
      .selectFrom('files as f')
      .innerJoin('file_versions as v', (j) => j.onRef('v.tenant_id', '=', 'f.tenant_id').onRef('v.path_key', '=', 'f.path_key').onRef('v.version', '=', 'f.version'))
      .select(['v.path_key', 'v.version', 'v.size', 'v.created_at', 'v.meta_enc'])
      .where('f.tenant_id', '=', tenantId)
      .where('f.deleted', '=', 0);
    if (folder !== '') {
      q = q
        .innerJoin('file_folders as d', (j) => j.onRef('d.tenant_id', '=', 'f.tenant_id').onRef('d.path_key', '=', 'f.path_key'))
        .where('d.folder_token', '=', folderToken(keys.folderKey, folder));
    }
    if (after) q = q.where('f.path_key', '>', after);
    const rows = await q.orderBy('f.path_key').limit(batchSize).execute();
    exhausted = rows.length < batchSize;
    for (const row of rows) {
      after = row.path_key;
      const fileMeta = await openMeta(core, principal, tenantId, row);
      if (!fileMeta.path.startsWith(prefix)) continue;
      found.push({ view: fileView(fileMeta, row), key: row.path_key });
      if (found.length > limit) break;
    }
  }
  const page = found.slice(0, limit);
  const dataKey = await tenantDataKey(core, tenantId, principal);
  await auditRead(core, principal, meta, { tenantId, action: 'file.list', target: sealedTarget(dataKey, tenantId, `prefix:${prefix} files:${page.length}`), result: 'ok' });
  return { files: page.map((f) => f.view), nextCursor: found.length > limit ? page[page.length - 1]!.key.toString('base64url') : null };
}
/** Every retained version of a file, newest first, tombstones included. */
export async function listFileVersions(core: Core, principal: Principal, meta: RequestMeta, address: FileAddress): Promise<FileVersionView[]> {
  const { tenantId } = address;
  authorize(principal, 'files.read', { tenantId });
  const keys = await fileKeys(core, tenantId, principal);
  const pathKey = keys.pathKey(address.path);
  const dataKey = await tenantDataKey(core, tenantId, principal);
  const rows = await core.db.reader
    .selectFrom('file_versions')
    .select([...FILE_VERSION_COLUMNS, 'noncurrent_since'])
    .where('tenant_id', '=', tenantId)
    .where('path_key', '=', pathKey)
    .orderBy('version', 'desc')
    .limit(core.limits.maxPageSize)
    .execute();
  await auditRead(core, principal, meta, { tenantId, action: 'file.versions', target: sealedTarget(dataKey, tenantId, `file:${address.path}`), result: rows.length ? 'ok' : 'not_found' });
  if (rows.length === 0) throw new NotFoundError('file not found');
  const versions: FileVersionView[] = [];
  for (const row of rows) {
    const view = fileView(await openMeta(core, principal, tenantId, row), row);
    versions.push({ ...view, op: row.op as 'put' | 'delete', current: row.noncurrent_since === null && row.op === 'put' });
  }
  return versions;
}
