import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BadRequestError, NotFoundError } from '../../errors.js';
import { checkObjectKey, type BlobStore, type StoredObject } from './blob-store.js';

const TEMP_PREFIX = '.tmp-';
/** Bytes each read or write moves: large enough that a 64 KiB segment is not one system call each. */
const IO_CHUNK = 1024 * 1024;

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT';

/**
 * Blobs as files under a root folder (0700, files 0600). A put streams to a temporary file beside
 * its target, fsyncs it, renames it into place and fsyncs the folder: a crash leaves the old object
 * or the new one, never a torn one, and an acknowledged put survives power loss.
 */
export function openFsBlobStore(root: string, name = `fs:${root}`): BlobStore {
  const pathOf = (key: string) => join(root, ...checkObjectKey(key).split('/'));

  async function syncFolder(folder: string): Promise<void> {
    const handle = await open(folder, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  return {
    name,
    async put(key, body): Promise<StoredObject> {
      const target = pathOf(key);
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      const temporary = join(dirname(target), `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
      const hash = createHash('sha256');
      let size = 0;
      try {
        const out = createWriteStream(temporary, { flags: 'wx', mode: 0o600, highWaterMark: IO_CHUNK });
        await pipeline(
          body,
          async function* (source: AsyncIterable<Buffer>) {
            for await (const chunk of source) {
              hash.update(chunk);
              size += chunk.length;
              yield chunk;
            }
          },
          out,
        );
        const handle = await open(temporary, 'r+');
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(temporary, target);
      } catch (error) {
        await rm(temporary, { force: true });
        throw error;
      }
      await syncFolder(dirname(target));
      return { size, sha256: hash.digest('hex') };
    },
    async get(key, range) {
      const path = pathOf(key);
      // Opened first, so a missing object is a NotFoundError rather than a failing stream.
      const handle = await open(path, 'r').catch((error: unknown) => {
        throw isMissing(error) ? new NotFoundError('object not found') : error;
      });
      return createReadStream('', { fd: handle, highWaterMark: IO_CHUNK, ...(range ? { start: range.start, end: range.end } : {}) }) as Readable;
    },
    async head(key) {
      try {
        return { size: (await stat(pathOf(key))).size };
      } catch (error) {
        if (isMissing(error)) return null;
        throw error;
      }
    },
    async delete(key) {
      const path = pathOf(key);
      await rm(path, { force: true });
      await syncFolder(dirname(path)).catch((error: unknown) => {
        if (!isMissing(error)) throw error;
      });
    },
    async *list(prefix) {
      if (!/^[a-z0-9_/-]*$/.test(prefix)) throw new BadRequestError('invalid object key prefix');
      const keys: string[] = [];
      const walk = async (folder: string): Promise<void> => {
        let entries;
        try {
          entries = await readdir(folder, { withFileTypes: true });
        } catch (error) {
          if (isMissing(error)) return;
          throw error;
        }
        for (const entry of entries) {
          if (entry.name.startsWith(TEMP_PREFIX)) continue;
          const path = join(folder, entry.name);
          if (entry.isDirectory()) await walk(path);
          else if (entry.isFile()) keys.push(relative(root, path).split(sep).join('/'));
        }
      };
      // Only the folder the prefix names is walked, not the whole store.
      const folder = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
      await walk(folder ? join(root, ...folder.split('/')) : root);
      for (const key of keys.sort()) if (key.startsWith(prefix)) yield key;
    },
  };
}
