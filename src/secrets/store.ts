import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { encodeAad, openRecord, sealRecord } from '../crypto/record-cipher.js';
import { BadRequestError, ConflictError, IntegrityError, NotFoundError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic-file.js';
import { withFileLock } from '../kms/file-lock.js';
import { wrappedKeyVersion, type Kms } from '../kms/kms.js';
import { assertPrivateMode } from '../kms/local-store-file.js';

/**
 * System secrets (database password, SMTP and S3 credentials, signing keys) in a 0600 file beside
 * the configuration, each sealed under its own data key that the KMS wraps with the system key:
 * the file alone opens nothing, and every use goes through the KMS. Kept outside the database,
 * because the database password is one of them.
 */
export interface SecretStore {
  set(name: string, value: Buffer): Promise<void>;
  /** NotFoundError when unset. */
  get(name: string): Promise<Buffer>;
  list(): Promise<SecretInfo[]>;
  delete(name: string): Promise<void>;
  /** Re-wraps every secret's data key under the system key's primary version; returns how many changed. */
  rewrap(): Promise<number>;
}

export interface SecretInfo {
  name: string;
  createdAt: string;
  updatedAt: string;
}

interface StoredSecret {
  wrappedKey: string;
  value: string;
  createdAt: string;
  updatedAt: string;
}

export const SECRET_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;
export const SYSTEM_SECRETS_KEY = 'system.secrets';
const MAX_SECRET_BYTES = 64 * 1024;

const aad = (name: string) => encodeAad(['strongroom/system-secret', name]);

/** A use of the system key to open a secret, for the system audit chain. */
export interface SecretKeyUse {
  name: string;
  purpose: 'read' | 'rewrap';
  kekVersion: number;
}

export interface SecretStoreOptions {
  file: string;
  kms: Kms;
  now?: () => number;
  /** Records each unwrap before its result is used; if it throws, the operation fails. */
  audit?: (use: SecretKeyUse) => Promise<void>;
}

export function openSecretStore(opts: SecretStoreOptions): SecretStore {
  const { file, kms } = opts;
  const audit = opts.audit ?? (async () => undefined);

  /** Unwraps a secret's data key through the KMS, and records that use. */
  async function unwrap(name: string, wrapped: Buffer, purpose: SecretKeyUse['purpose']): Promise<Buffer> {
    const dataKey = await kms.unwrapKey(SYSTEM_SECRETS_KEY, wrapped, aad(name));
    try {
      await audit({ name, purpose, kekVersion: wrappedKeyVersion(wrapped) });
    } catch (error) {
      dataKey.fill(0);
      throw error;
    }
    return dataKey;
  }
  const now = opts.now ?? Date.now;

  async function read(): Promise<Record<string, StoredSecret>> {
    let text: string;
    try {
      assertPrivateMode(file, (await stat(file)).mode, 'secrets.file');
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw error;
    }
    const parsed = JSON.parse(text) as { format?: unknown; secrets?: unknown };
    if (parsed.format !== 1 || typeof parsed.secrets !== 'object' || parsed.secrets === null) throw new IntegrityError(`${file} is not a secrets file`);
    return parsed.secrets as Record<string, StoredSecret>;
  }

  async function modify(change: (secrets: Record<string, StoredSecret>) => void): Promise<void> {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    await withFileLock(`${file}.lock`, async () => {
      const secrets = await read();
      change(secrets);
      await writeFileAtomic(file, `${JSON.stringify({ format: 1, secrets }, null, 2)}\n`, 0o600);
    });
  }

  const checkName = (name: string) => {
    if (!SECRET_NAME.test(name)) throw new BadRequestError('a secret name is 1-64 lower-case letters, digits, dots, dashes or underscores, starting with a letter');
  };

  return {
    async set(name, value) {
      checkName(name);
      if (value.length === 0 || value.length > MAX_SECRET_BYTES) throw new BadRequestError(`a secret is 1 to ${MAX_SECRET_BYTES} bytes`);
      await kms.createKey(SYSTEM_SECRETS_KEY).catch((error: unknown) => {
        if (!(error instanceof ConflictError)) throw error;
      });
      const dataKey = randomBytes(32);
      try {
        const wrappedKey = await kms.wrapKey(SYSTEM_SECRETS_KEY, dataKey, aad(name));
        const sealed = sealRecord({ id: 1, key: dataKey }, aad(name), value);
        const at = new Date(now()).toISOString();
        await modify((secrets) => {
          secrets[name] = { wrappedKey: wrappedKey.toString('base64'), value: sealed.toString('base64'), createdAt: secrets[name]?.createdAt ?? at, updatedAt: at };
        });
      } finally {
        dataKey.fill(0);
      }
    },
    async get(name) {
      checkName(name);
      const stored = (await read())[name];
      if (!stored) throw new NotFoundError(`no secret named ${name}: set it with strongroom secrets set ${name}`);
      const dataKey = await unwrap(name, Buffer.from(stored.wrappedKey, 'base64'), 'read');
      try {
        return openRecord({ id: 1, key: dataKey }, aad(name), Buffer.from(stored.value, 'base64'));
      } finally {
        dataKey.fill(0);
      }
    },
    async list() {
      return Object.entries(await read())
        .map(([name, s]) => ({ name, createdAt: s.createdAt, updatedAt: s.updatedAt }))
        .sort((a, b) => a.name.localeCompare(b.name));
    },
    async rewrap() {
      const primary = (await kms.listKeyVersions(SYSTEM_SECRETS_KEY)).find((v) => v.primary)?.version;
      const replacements = new Map<string, { from: string; to: string }>();
      for (const [name, stored] of Object.entries(await read())) {
        const wrapped = Buffer.from(stored.wrappedKey, 'base64');
        if (wrappedKeyVersion(wrapped) === primary) continue;
        const dataKey = await unwrap(name, wrapped, 'rewrap');
        try {
          replacements.set(name, { from: stored.wrappedKey, to: (await kms.wrapKey(SYSTEM_SECRETS_KEY, dataKey, aad(name))).toString('base64') });
        } finally {
          dataKey.fill(0);
        }
      }
      let changed = 0;
      await modify((secrets) => {
        for (const [name, { from, to }] of replacements) {
          // Only if nobody replaced the secret meanwhile.
          if (secrets[name]?.wrappedKey !== from) continue;
          secrets[name] = { ...secrets[name], wrappedKey: to };
          changed += 1;
        }
      });
      return changed;
    },
    async delete(name) {
      checkName(name);
      await modify((secrets) => {
        if (!secrets[name]) throw new NotFoundError(`no secret named ${name}`);
        delete secrets[name];
      });
    },
  };
}
