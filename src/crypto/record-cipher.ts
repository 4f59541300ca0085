import { createCipheriv, createDecipheriv, hkdfSync, timingSafeEqual } from 'node:crypto';
import { IntegrityError, StrongroomError } from '../errors.js';
import { fillRandom } from './random-pool.js';

export { encodeAad } from './aad.js';

/** A tenant's data-encryption key, as handed out by the keyring. */
export interface DataKey {
  /** Stored in every ciphertext header so a reader knows which key to fetch. u32. */
  id: number;
  /** 32 bytes. */
  key: Buffer;
}

/*
 * Sealed record layout:
 *   0x01 (format) | dataKeyId (u32 BE) | salt (16) | commitment (32) | ciphertext | tag (16)
 * HKDF-SHA256(data key, salt, 'strongroom/record/v1') gives a fresh AES-256-GCM key, a key
 * commitment and the IV for every message, so random-nonce collision limits never apply and a
 * ciphertext opens under exactly one data key (GCM alone is not key-committing).
 */
const FORMAT = 0x01;
const KEY_ID_OFFSET = 1;
const SALT_OFFSET = 5;
const SALT_LENGTH = 16;
const COMMITMENT_OFFSET = SALT_OFFSET + SALT_LENGTH;
const COMMITMENT_LENGTH = 32;
const HEADER_LENGTH = COMMITMENT_OFFSET + COMMITMENT_LENGTH;
const TAG_LENGTH = 16;
const DATA_KEY_LENGTH = 32;
const HKDF_INFO = Buffer.from('strongroom/record/v1', 'latin1');
const DERIVED_LENGTH = 32 + COMMITMENT_LENGTH + 12;

/** One message for every failure, so a caller cannot learn which check rejected the input. */
const OPEN_FAILED = 'record ciphertext failed authentication';

/**
 * Encrypts a record body under a data key, binding `aad` (see encodeAad: tenant | collection |
 * id | version) so the ciphertext cannot be moved to another record or version.
 *
 * @example const sealed = sealRecord(dataKey, encodeAad([tenant, collection, id, version]), body);
 */
export function sealRecord(dataKey: DataKey, aad: Buffer, plaintext: Buffer): Buffer {
  assertUsableDataKey(dataKey);
  const sealed = Buffer.allocUnsafe(HEADER_LENGTH + plaintext.length + TAG_LENGTH);
  sealed[0] = FORMAT;
  sealed.writeUInt32BE(dataKey.id, KEY_ID_OFFSET);
  fillRandom(sealed, SALT_OFFSET, SALT_LENGTH);
  const derived = deriveMessageSecrets(dataKey.key, sealed.subarray(SALT_OFFSET, COMMITMENT_OFFSET));
  derived.copy(sealed, COMMITMENT_OFFSET, 32, 64);

  const cipher = createCipheriv('aes-256-gcm', derived.subarray(0, 32), derived.subarray(64), {
    authTagLength: TAG_LENGTH,
  });
  derived.fill(0);
  // The header is authenticated too, so neither the key id nor the salt can be edited.
  cipher.setAAD(sealed.subarray(0, HEADER_LENGTH));
  cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  body.copy(sealed, HEADER_LENGTH);
  cipher.final();
  cipher.getAuthTag().copy(sealed, HEADER_LENGTH + plaintext.length);
  return sealed;
}

/** The data key id named in a sealed record's header; IntegrityError if it is not one. */
export function recordKeyId(ciphertext: Buffer): number {
  if (ciphertext.length < HEADER_LENGTH + TAG_LENGTH || ciphertext[0] !== FORMAT) {
    throw new IntegrityError(OPEN_FAILED);
  }
  return ciphertext.readUInt32BE(KEY_ID_OFFSET);
}

/**
 * Decrypts a sealed record with the same `aad` it was sealed with. Throws IntegrityError, with one
 * message whatever the cause, if the input is malformed, names another key or does not authenticate.
 */
export function openRecord(dataKey: DataKey, aad: Buffer, ciphertext: Buffer): Buffer {
  assertUsableDataKey(dataKey);
  if (recordKeyId(ciphertext) !== dataKey.id) {
    throw new IntegrityError(OPEN_FAILED);
  }
  const derived = deriveMessageSecrets(dataKey.key, ciphertext.subarray(SALT_OFFSET, COMMITMENT_OFFSET));
  // Checked before decrypting: a ciphertext crafted to open under two keys fails here.
  const committed = timingSafeEqual(
    derived.subarray(32, 64),
    ciphertext.subarray(COMMITMENT_OFFSET, HEADER_LENGTH),
  );
  if (!committed) {
    derived.fill(0);
    throw new IntegrityError(OPEN_FAILED);
  }
  const tagOffset = ciphertext.length - TAG_LENGTH;
  const decipher = createDecipheriv('aes-256-gcm', derived.subarray(0, 32), derived.subarray(64), {
    authTagLength: TAG_LENGTH,
  });
  derived.fill(0);
  decipher.setAuthTag(ciphertext.subarray(tagOffset));
  decipher.setAAD(ciphertext.subarray(0, HEADER_LENGTH));
  decipher.setAAD(aad);
  const plaintext = decipher.update(ciphertext.subarray(HEADER_LENGTH, tagOffset));
  try {
    decipher.final();
  } catch {
    // Unauthenticated plaintext must not outlive the failed check.
    plaintext.fill(0);
    throw new IntegrityError(OPEN_FAILED);
  }
  return plaintext;
}

/** 76 bytes: message key (32) | commitment (32) | IV (12). The caller zero-fills it after use. */
function deriveMessageSecrets(dataKey: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', dataKey, salt, HKDF_INFO, DERIVED_LENGTH));
}

function assertUsableDataKey(dataKey: DataKey): void {
  if (
    !Number.isInteger(dataKey.id) ||
    dataKey.id < 0 ||
    dataKey.id > 0xffffffff ||
    !Buffer.isBuffer(dataKey.key) ||
    dataKey.key.length !== DATA_KEY_LENGTH
  ) {
    throw new StrongroomError('internal', 'a data key is a u32 id and 32 bytes of key');
  }
  // The keyring zero-fills keys it forgets; a forgotten key must never encrypt or decrypt.
  let bits = 0;
  for (let i = 0; i < DATA_KEY_LENGTH; i++) {
    bits |= dataKey.key[i] as number;
  }
  if (bits === 0) {
    throw new StrongroomError('internal', 'refusing an all-zero data key (it was wiped)');
  }
}
