import { openRecord, recordKeyId } from '../../crypto/record-cipher.js';
import { recordKeyFor } from '../../crypto/record-key.js';
import { BadRequestError } from '../../errors.js';
import type { FileVersionsTable } from '../../store/db/tables.js';
import type { Actor, Core } from '../context.js';
import { collectionKeys, tenantDataKeyById } from '../tenant-keys.js';
import { checkFilePath, fileMetaAad } from './file-paths.js';

/** What a version's sealed metadata holds: nothing of it reaches the database in the clear. */
export interface FileMeta {
  path: string;
  contentType: string;
  /** SHA-256 (hex) of the plaintext; empty for a tombstone. */
  sha256: string;
}

export interface FileView {
  path: string;
  version: number;
  size: number;
  contentType: string;
  sha256: string;
  createdAt: string;
}

export interface FileVersionView extends FileView {
  op: 'put' | 'delete';
  current: boolean;
}

export interface FileAddress {
  tenantId: string;
  path: string;
}

/** Files live under the tenant's index key like a collection whose name no tenant can choose. */
const FILES = '$files';

/** The keys that locate a tenant's files: a path's key, and folder tokens for listing. */
export async function fileKeys(core: Core, tenantId: string, caller: Actor) {
  const keys = await collectionKeys(core, tenantId, FILES, caller);
  const folderKey = Buffer.from(keys.fieldKey('$folder'));
  return { pathKey: (path: string) => recordKeyFor(keys.idKey, checkFilePath(path)), folderKey };
}

export async function openMeta(core: Core, caller: Actor, tenantId: string, row: Pick<FileVersionsTable, 'path_key' | 'version' | 'meta_enc'>): Promise<FileMeta> {
  const key = await tenantDataKeyById(core, tenantId, recordKeyId(row.meta_enc), caller);
  return JSON.parse(openRecord(key, fileMetaAad(tenantId, row.path_key, Number(row.version)), row.meta_enc).toString('utf8')) as FileMeta;
}

export function fileView(meta: FileMeta, row: Pick<FileVersionsTable, 'version' | 'size' | 'created_at'>): FileView {
  return {
    path: meta.path,
    version: Number(row.version),
    size: Number(row.size),
    contentType: meta.contentType,
    sha256: meta.sha256,
    createdAt: new Date(Number(row.created_at)).toISOString(),
  };
}

/** type/subtype with optional parameters, printable ASCII: it is stored sealed and sent back as given. */
const CONTENT_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(\s*;\s*[\x21-\x7e ]{1,200})?$/;

export function checkContentType(contentType: string): string {
  if (!CONTENT_TYPE.test(contentType)) throw new BadRequestError('invalid Content-Type');
  return contentType;
}

export const FILE_VERSION_COLUMNS = ['path_key', 'version', 'op', 'object_key', 'size', 'stored_size', 'stored_sha256', 'meta_enc', 'created_at'] as const;
