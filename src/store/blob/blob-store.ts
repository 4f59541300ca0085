import type { Readable } from 'node:stream';
import { BadRequestError } from '../../errors.js';

/**
 * One interface for every blob backend (local filesystem, S3 API). Keys are names Strongroom makes
 * up (tenant id / random object id), never a tenant's file name; bodies are ciphertext already.
 */
export interface StoredObject {
  size: number;
  /** SHA-256 (hex) of the stored bytes, computed while writing, for scrubbing and repair. */
  sha256: string;
}

export interface BlobStore {
  readonly name: string;
  /** Writes the whole body or nothing: a reader never sees a partial object. */
  put(key: string, body: Readable): Promise<StoredObject>;
  /** The object's bytes, or the inclusive range; NotFoundError when it does not exist. */
  get(key: string, range?: { start: number; end: number }): Promise<Readable>;
  /** Size of the object, or null when it does not exist. */
  head(key: string): Promise<{ size: number } | null>;
  /** Removes the object; removing a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** Keys under a prefix, in lexical order. */
  list(prefix: string): AsyncIterable<string>;
}

/** Object keys: lower-case segments of letters, digits, `_` and `-`, separated by `/`. */
export const OBJECT_KEY = /^[a-z0-9][a-z0-9_-]{0,127}(\/[a-z0-9][a-z0-9_-]{0,127}){0,7}$/;

export function checkObjectKey(key: string): string {
  if (!OBJECT_KEY.test(key)) throw new BadRequestError('invalid object key');
  return key;
}
