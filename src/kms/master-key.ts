import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError, ConflictError } from '../errors.js';
import { errorCode } from './file-lock.js';
import { assertPrivateMode } from './local-store-file.js';

const MASTER_KEY_LENGTH = 32;
/** Standard base64 of exactly 32 bytes: 43 characters and one '=' of padding. */
const BASE64_OF_32_BYTES = /^[A-Za-z0-9+/]{43}=$/;

/**
 * Reads the local KMS master key, from an environment variable's value (base64 of 32 bytes) if
 * given, else from a file holding exactly 32 raw bytes, mode 0600 or stricter. Error messages never
 * include key material.
 *
 * @example await readMasterKey({ env: process.env.STRONGROOM_MASTER_KEY, file: '.strongroom/master.key' })
 */
export async function readMasterKey(opts: { file?: string; env?: string }): Promise<Buffer> {
  if (opts.env !== undefined) {
    const text = opts.env.trim();
    if (!BASE64_OF_32_BYTES.test(text)) {
      throw new ConfigError('kms.local.masterKeyEnv', 'the master key must be the base64 encoding of 32 bytes');
    }
    return Buffer.from(text, 'base64');
  }
  if (opts.file !== undefined) {
    return readMasterKeyFile(opts.file);
  }
  throw new ConfigError('kms.local', 'a master key is required: set masterKeyFile or masterKeyEnv');
}

/**
 * Writes a new master key file: 32 random bytes, mode 0600. Never overwrites: replacing a master key
 * would make every key in the store unreadable.
 */
export async function createMasterKeyFile(file: string): Promise<void> {
  let handle;
  try {
    handle = await open(file, 'wx', 0o600);
  } catch (error) {
    if (errorCode(error) === 'EEXIST') {
      throw new ConflictError(`${file} already exists; a master key file is never overwritten`);
    }
    throw error;
  }
  const key = randomBytes(MASTER_KEY_LENGTH);
  try {
    await handle.writeFile(key);
    await handle.sync();
  } finally {
    key.fill(0);
    await handle.close();
  }
  const directory = await open(dirname(file), 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

async function readMasterKeyFile(file: string): Promise<Buffer> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      throw new ConfigError('kms.local.masterKeyFile', `${file} does not exist`);
    }
    throw error;
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) {
      throw new ConfigError('kms.local.masterKeyFile', `${file} is not a regular file`);
    }
    assertPrivateMode(file, stats.mode, 'kms.local.masterKeyFile');
    if (stats.size !== MASTER_KEY_LENGTH) {
      throw new ConfigError(
        'kms.local.masterKeyFile',
        `${file} holds ${stats.size} bytes; a master key file holds exactly ${MASTER_KEY_LENGTH} raw bytes`,
      );
    }
    const key = Buffer.alloc(MASTER_KEY_LENGTH);
    const { bytesRead } = await handle.read(key, 0, MASTER_KEY_LENGTH, 0);
    if (bytesRead !== MASTER_KEY_LENGTH) {
      key.fill(0);
      throw new ConfigError('kms.local.masterKeyFile', `${file} could not be read in full`);
    }
    return key;
  } finally {
    await handle.close();
  }
}
