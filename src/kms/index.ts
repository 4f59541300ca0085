import { ConfigError } from '../errors.js';
import type { Kms } from './kms.js';
import { openLocalKms, readMasterKey } from './local.js';

export type { Kms, KeyVersionInfo, KmsHealth } from './kms.js';

/** Paths may be null where the config schema leaves them unresolved; a null store path is refused. */
export interface LocalKmsConfig {
  keyStoreFile: string | null;
  /** 32 raw bytes, mode 0600; used when the environment variable below is unset. */
  masterKeyFile?: string | null;
  /** The name of an environment variable holding the master key as base64 of 32 bytes. */
  masterKeyEnv?: string;
}

/** Null where the schema leaves a value unset; a null key ring is refused. */
export interface GcpKmsConfig {
  keyRing: string | null;
  credentialsFile: string | null;
  apiEndpoint: string | null;
}

/** One case per provider; pkcs11 joins the union and the switch. */
export type KmsConfig =
  | { provider: 'local'; local: LocalKmsConfig }
  | { provider: 'gcp'; gcp: GcpKmsConfig; destroyWaitSeconds: number };

/**
 * Opens the configured KMS provider. The app uses only this and the Kms interface, never a provider
 * module directly.
 *
 * @example const kms = await openKms(config.kms);
 */
export async function openKms(config: KmsConfig): Promise<Kms> {
  switch (config.provider) {
    case 'local':
      return openLocalProvider(config.local);
    case 'gcp': {
      const { keyRing, credentialsFile, apiEndpoint } = config.gcp;
      if (keyRing === null || keyRing === '') {
        throw new ConfigError('kms.gcp.keyRing', 'the gcp provider needs a key ring: projects/PROJECT/locations/LOCATION/keyRings/RING');
      }
      // Loaded only here: the Google client costs every other process ~0.3 s and ~30 MB at start.
      const { openGcpKms } = await import('./gcp.js');
      return openGcpKms({ keyRing, credentialsFile, apiEndpoint, destroyWaitSeconds: config.destroyWaitSeconds });
    }
    default: {
      const unknown: never = config;
      throw new ConfigError('kms.provider', `unknown KMS provider ${JSON.stringify((unknown as { provider?: unknown }).provider)}`);
    }
  }
}

async function openLocalProvider(local: LocalKmsConfig): Promise<Kms> {
  const keyStoreFile = local.keyStoreFile;
  if (keyStoreFile === null || keyStoreFile === '') {
    throw new ConfigError('kms.local.keyStoreFile', 'a key store file is required');
  }
  const fromEnv = local.masterKeyEnv === undefined ? undefined : process.env[local.masterKeyEnv];
  const masterKeyFile = local.masterKeyFile ?? undefined;
  if ((fromEnv === undefined || fromEnv === '') && masterKeyFile === undefined) {
    const hint = local.masterKeyEnv === undefined ? '' : ` or the environment variable ${local.masterKeyEnv}`;
    throw new ConfigError('kms.local.masterKeyFile', `a master key is required: set masterKeyFile${hint}`);
  }
  const masterKey = await readMasterKey(
    fromEnv !== undefined && fromEnv !== '' ? { env: fromEnv } : { file: masterKeyFile },
  );
  try {
    return await openLocalKms({ keyStoreFile, masterKey });
  } finally {
    // openLocalKms keeps its own copy.
    masterKey.fill(0);
  }
}
