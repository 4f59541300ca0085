import { createHmac } from 'node:crypto';
import { encodeAad } from '../../crypto/record-cipher.js';
import { BadRequestError } from '../../errors.js';

/**
 * File paths are chosen by tenants: `/`-separated segments of printable characters, no empty,
 * `.` or `..` segment (nothing resolves outside the tenant's namespace; names stay unambiguous).
 */
const MAX_PATH_BYTES = 1024;
const MAX_SEGMENTS = 32;
/** Control characters and lone surrogates (which no UTF-8 can spell). */
const UNPRINTABLE = /[\p{Cc}\p{Cs}]/u;

export function checkFilePath(path: string): string {
  const segments = path.split('/');
  if (
    path.length === 0 ||
    Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES ||
    segments.length > MAX_SEGMENTS ||
    UNPRINTABLE.test(path) ||
    segments.some((s) => s === '' || s === '.' || s === '..')
  ) {
    throw new BadRequestError(`invalid file path: 1-${MAX_PATH_BYTES} bytes of /-separated names, none empty, "." or ".."`);
  }
  return path;
}

/** A listing prefix: a path, a path's beginning, or a folder ending in `/`; empty lists everything. */
export function checkPrefix(prefix: string): string {
  if (prefix === '') return prefix;
  checkFilePath(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
  return prefix;
}

/** The folders above a path, each ending in `/`: `a/b/c.txt` → `a/`, `a/b/`. */
export function foldersOf(path: string): string[] {
  const segments = path.split('/').slice(0, -1);
  return segments.map((_, i) => `${segments.slice(0, i + 1).join('/')}/`);
}

/** The folder a prefix lies in: `a/b/` → itself, `a/b/re` → `a/b/`, `re` → the root (''). */
export function folderOfPrefix(prefix: string): string {
  return prefix.slice(0, prefix.lastIndexOf('/') + 1);
}

/** Equal folders give equal tokens under the tenant's folder key, and reveal nothing else. */
export function folderToken(folderKey: Buffer, folder: string): Buffer {
  return createHmac('sha256', folderKey).update(folder, 'utf8').digest();
}

/**
 * A blob's ciphertext is bound to its tenant, the path it was written for and its own object key:
 * a blob moved to another key, file or tenant fails to decrypt.
 */
export const fileAad = (tenantId: string, pathKey: Buffer, objectKey: string) => encodeAad(['strongroom/file', tenantId, pathKey, objectKey]);

export const fileMetaAad = (tenantId: string, pathKey: Buffer, version: number) => encodeAad(['strongroom/file-meta', tenantId, pathKey, version]);
