import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Kind, type TSchema, type TObject } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ConfigError } from '../errors.js';
import { ConfigSchema, type Config } from './schema.js';

export interface ConfigSources {
  /** Path of a JSON configuration file (`--config FILE`). */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Command-line flags, which win over the file and the environment. */
  overrides?: { dataDir?: string | undefined; port?: number | undefined };
}

const ENV_PREFIX = 'STRONGROOM_';

interface Leaf {
  path: string[];
  schema: TSchema;
}

function leaves(schema: TObject, path: string[] = []): Leaf[] {
  return Object.entries(schema.properties).flatMap(([key, child]) =>
    child[Kind] === 'Object'
      ? leaves(child as TObject, [...path, key])
      : [{ path: [...path, key], schema: child }],
  );
}

const LEAVES = leaves(ConfigSchema);

/** Every configuration key, as a dotted path. */
export const configKeys = (): string[] => LEAVES.map((leaf) => leaf.path.join('.'));

const SECRET_LEAVES = LEAVES.filter((leaf) => (leaf.schema as { secret?: boolean }).secret);

/** A value that names a system secret instead of holding it. */
export const SECRET_REF = /^secret:([a-z][a-z0-9_.-]{0,63})$/;

function getPath(source: unknown, path: string[]): unknown {
  return path.reduce<unknown>((node, key) => (typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[key] : undefined), source);
}

/** The keys whose values are `secret:NAME` references, with the names. */
export function secretRefs(config: Config): { path: string[]; name: string }[] {
  return SECRET_LEAVES.flatMap((leaf) => {
    const match = SECRET_REF.exec(String(getPath(config, leaf.path)));
    return match ? [{ path: leaf.path, name: match[1]! }] : [];
  });
}

/** A copy of the configuration with the given values in place of their references. */
export function withSecretValues(config: Config, values: { path: string[]; value: string }[]): Config {
  const copy = structuredClone(config) as unknown as Record<string, unknown>;
  for (const { path, value } of values) setPath(copy, path, value);
  return copy as unknown as Config;
}

/** `auth.firebase.projectId` → `STRONGROOM_AUTH__FIREBASE__PROJECT_ID`. */
export function envName(path: string[]): string {
  return ENV_PREFIX + path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('__');
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

/** A string is taken as is where the key accepts one; otherwise it is read as JSON (numbers, booleans, null). */
function parseEnvValue(leaf: Leaf, raw: string): unknown {
  if (Value.Check(leaf.schema, raw)) return raw;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('--config', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('--config', `${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError('--config', `${file} must hold a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

function firstError(value: unknown): ConfigError | undefined {
  const error = Value.Errors(ConfigSchema, value).First();
  if (!error) return undefined;
  const key = error.path.split('/').filter(Boolean).join('.') || '(root)';
  const reason = error.message === 'Unexpected property' ? 'unknown key' : error.message;
  return new ConfigError(key, `${reason} (got ${JSON.stringify(error.value) ?? 'nothing'})`);
}

/**
 * Reads the configuration: schema defaults, then the file, then `STRONGROOM_*` variables, then flags.
 * Throws ConfigError naming the first invalid key. Relative paths are resolved against the data directory.
 */
export function loadConfig(sources: ConfigSources = {}): Config {
  const raw: Record<string, unknown> = sources.file ? readConfigFile(sources.file) : {};
  const fromFile = structuredClone(raw);
  const env = sources.env ?? process.env;
  for (const leaf of LEAVES) {
    const value = env[envName(leaf.path)];
    if (value !== undefined) setPath(raw, leaf.path, parseEnvValue(leaf, value));
  }
  if (sources.overrides?.dataDir !== undefined) raw.dataDir = sources.overrides.dataDir;
  if (sources.overrides?.port !== undefined) setPath(raw, ['server', 'port'], sources.overrides.port);

  const withDefaults = Value.Default(ConfigSchema, raw);
  const error = firstError(withDefaults);
  if (error) throw error;
  checkConsistency(withDefaults as Config);
  if ((withDefaults as Config).mode === 'production') refusePlainSecrets(fromFile);
  return resolvePaths(withDefaults as Config);
}

/** In production, a secret in the configuration file must be a reference, never the value itself. */
function refusePlainSecrets(fromFile: Record<string, unknown>): void {
  for (const leaf of SECRET_LEAVES) {
    const value = getPath(fromFile, leaf.path);
    if (typeof value === 'string' && !SECRET_REF.test(value)) {
      throw new ConfigError(leaf.path.join('.'), 'holds a secret in the configuration file: in production mode, store it with strongroom secrets set NAME and write secret:NAME');
    }
  }
}

/** Rules that span keys, which the schema alone cannot say. */
function checkConsistency(config: Config): void {
  const { firebase, oidc } = config.auth;
  if (config.mode === 'production' && firebase.emulatorHost !== null) {
    throw new ConfigError('auth.firebase.emulatorHost', 'the Firebase Auth emulator is not allowed in production mode');
  }
  if (firebase.checkRevoked && firebase.emulatorHost === null && firebase.serviceAccountFile === null) {
    throw new ConfigError('auth.firebase.serviceAccountFile', 'is required to check for revoked tokens (auth.firebase.checkRevoked)');
  }
  if (config.kms.pkcs11.pin !== null && SECRET_REF.test(config.kms.pkcs11.pin)) {
    throw new ConfigError('kms.pkcs11.pin', 'cannot be a secret:NAME reference, since the KMS it opens seals the secrets; set STRONGROOM_KMS__PKCS11__PIN');
  }
  if (config.lifecycle.purgeAfterDays < config.lifecycle.exportWindowDays) {
    throw new ConfigError('lifecycle.purgeAfterDays', `is shorter than the export window the deployment promises (lifecycle.exportWindowDays: ${config.lifecycle.exportWindowDays})`);
  }
  for (const side of ['primary', 'replica'] as const) {
    const backend = config.blobs[side];
    if (backend.kind === 's3' && backend.s3.bucket === null) throw new ConfigError(`blobs.${side}.s3.bucket`, 'is required for an s3 backend');
    if ((backend.s3.accessKeyId === null) !== (backend.s3.secretAccessKey === null)) {
      throw new ConfigError(`blobs.${side}.s3.secretAccessKey`, 'goes with blobs.' + side + '.s3.accessKeyId: set both, or neither for the default credential chain');
    }
  }
  const { primary, replica } = config.blobs;
  const samePlace =
    primary.kind === 'fs'
      ? primary.path !== null && primary.path === replica.path
      : primary.s3.bucket === replica.s3.bucket && primary.s3.endpoint === replica.s3.endpoint && primary.s3.prefix === replica.s3.prefix;
  if (primary.kind === replica.kind && samePlace) {
    throw new ConfigError('blobs.replica', 'is the same place as blobs.primary: a replica must be a second folder, disk, bucket or region');
  }
  const trusted = new Set(oidc.issuers.map((i) => i.issuer));
  if (firebase.projectId) trusted.add(`https://securetoken.google.com/${firebase.projectId}`);
  config.operators.identities.forEach((identity, i) => {
    if ((identity.subject === undefined) === (identity.emailDomain === undefined)) {
      throw new ConfigError(`operators.identities.${i}`, 'needs exactly one of subject or emailDomain');
    }
    if (!trusted.has(identity.issuer)) {
      throw new ConfigError(`operators.identities.${i}.issuer`, 'is not a trusted issuer (auth.firebase.projectId or auth.oidc.issuers)');
    }
  });
}

function resolvePaths(config: Config): Config {
  const dataDir = resolve(config.dataDir);
  const inData = (file: string | null, fallback: string) =>
    file === null ? resolve(dataDir, fallback) : isAbsolute(file) ? file : resolve(file);
  return {
    ...config,
    dataDir,
    database: {
      ...config.database,
      sqlite: { file: inData(config.database.sqlite.file, 'strongroom.db') },
    },
    secrets: { file: inData(config.secrets.file, 'secrets.json') },
    blobs: {
      ...config.blobs,
      primary: { ...config.blobs.primary, path: inData(config.blobs.primary.path, 'blobs/primary') },
      replica: { ...config.blobs.replica, path: inData(config.blobs.replica.path, 'blobs/replica') },
    },
    kms: {
      ...config.kms,
      local: {
        ...config.kms.local,
        keyStoreFile: inData(config.kms.local.keyStoreFile, 'kms/keystore.json'),
        masterKeyFile: inData(config.kms.local.masterKeyFile, 'kms/master.key'),
      },
    },
  };
}

const MASK = '********';

/** The effective configuration with every value marked secret replaced by a mask. */
export function maskedConfig(config: Config): Config {
  const copy = structuredClone(config) as unknown as Record<string, unknown>;
  for (const leaf of LEAVES) {
    if (!(leaf.schema as { secret?: boolean }).secret) continue;
    let node: Record<string, unknown> | undefined = copy;
    for (const key of leaf.path.slice(0, -1)) node = node?.[key] as Record<string, unknown> | undefined;
    const last = leaf.path[leaf.path.length - 1]!;
    if (node && node[last] !== null && node[last] !== undefined) node[last] = MASK;
  }
  return copy as unknown as Config;
}
