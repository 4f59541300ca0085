import { createHash } from 'node:crypto';

export interface Digests {
  size: number;
  /** Hex SHA-256 of the whole body. */
  sha256: string;
  /** MD5 of the whole body: a single PUT's ETag (hex) and its Content-MD5 (base64). */
  md5: Buffer;
  /** S3's ETag for a multipart upload cut into parts of `partSize`: MD5 of the parts' MD5s, "-", part count. */
  multipartEtag: string;
}

/**
 * The digests of a body, computed as it streams past, so a put can return the SHA-256 and size and
 * predict the ETag the service should report for the bytes it stored.
 */
export class BodyDigests {
  #size = 0;
  readonly #sha256 = createHash('sha256');
  readonly #md5 = createHash('md5');
  readonly #partMd5s: Buffer[] = [];
  #part = createHash('md5');
  #partFill = 0;

  /** The part size must be the one the multipart upload cuts at: every part but the last is this long. */
  constructor(readonly partSize: number) {}

  get size(): number {
    return this.#size;
  }

  update(chunk: Buffer): void {
    this.#size += chunk.length;
    this.#sha256.update(chunk);
    this.#md5.update(chunk);
    for (let offset = 0; offset < chunk.length; ) {
      if (this.#partFill === this.partSize) {
        this.#partMd5s.push(this.#part.digest());
        this.#part = createHash('md5');
        this.#partFill = 0;
      }
      const take = Math.min(chunk.length - offset, this.partSize - this.#partFill);
      this.#part.update(chunk.subarray(offset, offset + take));
      this.#partFill += take;
      offset += take;
    }
  }

  /** Once, after the last byte. */
  finish(): Digests {
    const partMd5s = this.#partFill > 0 || this.#partMd5s.length === 0 ? [...this.#partMd5s, this.#part.digest()] : this.#partMd5s;
    const ofParts = createHash('md5');
    for (const md5 of partMd5s) ofParts.update(md5);
    return {
      size: this.#size,
      sha256: this.#sha256.digest('hex'),
      md5: this.#md5.digest(),
      multipartEtag: `${ofParts.digest('hex')}-${partMd5s.length}`,
    };
  }
}
