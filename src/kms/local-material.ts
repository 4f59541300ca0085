import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { IntegrityError, StrongroomError } from '../errors.js';
import type { StoredKeyVersion } from './local-store-file.js';

/*
 * KEK material in the local key store: base64( iv (12) | AES-256-GCM(master key, KEK) (32) | tag (16) ),
 * with AAD `strongroom-local-kms|<name>|<version>` so an entry copied to another name or version fails.
 */

export const KEK_LENGTH = 32;
const IV_LENGTH = 12;
const TAG_LENGTH = 16;
const MATERIAL_LENGTH = IV_LENGTH + KEK_LENGTH + TAG_LENGTH;

/** The sealed material of a version the state machine allows to be used; its absence is a bug. */
export function materialOf(keyName: string, version: StoredKeyVersion): string {
  if (version.material === undefined) {
    throw new StrongroomError('internal', `KMS key ${keyName} version ${version.version} has no material`);
  }
  return version.material;
}

function materialAad(keyName: string, version: number): Buffer {
  return Buffer.from(`strongroom-local-kms|${keyName}|${version}`, 'utf8');
}

export function sealMaterial(masterKey: Buffer, keyName: string, version: number, kek: Buffer): string {
  const iv = randomBytes(IV_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', masterKey, iv, { authTagLength: TAG_LENGTH });
  cipher.setAAD(materialAad(keyName, version));
  const sealed = Buffer.concat([iv, cipher.update(kek), cipher.final(), cipher.getAuthTag()]);
  return sealed.toString('base64');
}

export function openMaterial(masterKey: Buffer, keyName: string, version: StoredKeyVersion): Buffer {
  const failed = new IntegrityError(
    `KMS key ${keyName} version ${version.version} does not open under the master key: wrong master key, or the key store was edited`,
  );
  const sealed = Buffer.from(materialOf(keyName, version), 'base64');
  if (sealed.length !== MATERIAL_LENGTH) {
    throw failed;
  }
  const decipher = createDecipheriv('aes-256-gcm', masterKey, sealed.subarray(0, IV_LENGTH), {
    authTagLength: TAG_LENGTH,
  });
  decipher.setAuthTag(sealed.subarray(IV_LENGTH + KEK_LENGTH));
  decipher.setAAD(materialAad(keyName, version.version));
  const kek = decipher.update(sealed.subarray(IV_LENGTH, IV_LENGTH + KEK_LENGTH));
  try {
    decipher.final();
  } catch {
    kek.fill(0);
    throw failed;
  }
  return kek;
}
