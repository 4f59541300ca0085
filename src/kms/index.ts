import { ConfigError } from '../errors.js';
import { DEFAULT_DESTROY_WAIT_SECONDS, type Kms } from './kms.js';
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

/** Null where the schema leaves a value unset; openKms names the missing key. */
export interface Pkcs11KmsConfig {
  library: string | null;
  tokenLabel: string | null;
  /** From the config file or STRONGROOM_KMS__PKCS11__PIN; never logged. */
  pin: string | null;
  sessions?: number;
}

/** Null where the schema leaves a value unset; a null key ring is refused. */
export interface GcpKmsConfig {
  keyRing: string | null;
  credentialsFile: string | null;
  apiEndpoint: string | null;
}

/** Seconds a key scheduled for destruction can still be restored; the schema's default is 24 h. */
interface KmsCommonConfig {
  destroyWaitSeconds?: number;
}

/**
 * The `kms` section of the configuration: one case per provider, each reading only its own part, so
 * `openKms(config.kms)` takes the whole validated section.
 */
export type KmsConfig = KmsCommonConfig &
  (
    | { provider: 'local'; local: LocalKmsConfig }
    | { provider: 'pkcs11'; pkcs11: Pkcs11KmsConfig }
    | { provider: 'gcp'; gcp: GcpKmsConfig }
  );

/**
 * Opens the configured KMS provider. The app uses only this and the Kms interface, never a provider
 * module directly.
 *
 * @example const kms = await openKms(config.kms);
 */
export async function openKms(config: KmsConfig): Promise<Kms> {
  switch (config.provider) {
    case 'local':
      return openLocalProvider(config.local, config.destroyWaitSeconds);
    case 'pkcs11':
      return openPkcs11Provider(config.pkcs11, config.destroyWaitSeconds);
    case 'gcp': {
      const { keyRing, credentialsFile, apiEndpoint } = config.gcp;
      if (keyRing === null || keyRing === '') {
        throw new ConfigError('kms.gcp.keyRing', 'the gcp provider needs a key ring: projects/PROJECT/locations/LOCATION/keyRings/RING');
      }
      // Loaded only here: the Google client costs every other process ~0.3 s and ~30 MB at start.
      const { openGcpKms } = await import('./gcp.js');
      return openGcpKms({ keyRing, credentialsFile, apiEndpoint, destroyWaitSeconds: config.destroyWaitSeconds ?? DEFAULT_DESTROY_WAIT_SECONDS });
    }
    default: {
      const unknown: never = config;
      throw new ConfigError('kms.provider', `unknown KMS provider ${JSON.stringify((unknown as { provider?: unknown }).provider)}`);
    }
  }
}

async function openLocalProvider(local: LocalKmsConfig, destroyWaitSeconds: number | undefined): Promise<Kms> {
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
    return await openLocalKms({ keyStoreFile, masterKey, destroyWaitSeconds });
  } finally {
    // openLocalKms keeps its own copy.
    masterKey.fill(0);
  }
}

async function openPkcs11Provider(pkcs11: Pkcs11KmsConfig, destroyWaitSeconds: number | undefined): Promise<Kms> {
  const { library, tokenLabel, pin } = pkcs11;
  if (library === null || library === '') {
    throw new ConfigError('kms.pkcs11.library', 'the path of the PKCS#11 module is required, e.g. /usr/lib/softhsm/libsofthsm2.so');
  }
  if (tokenLabel === null || tokenLabel === '') {
    throw new ConfigError('kms.pkcs11.tokenLabel', 'the label of the token holding the keys is required');
  }
  if (pin === null || pin === '') {
    throw new ConfigError('kms.pkcs11.pin', 'the user PIN is required; set STRONGROOM_KMS__PKCS11__PIN');
  }
  // Loaded only when configured: the native module is of no use to the other providers.
  const { openPkcs11Kms } = await import('./pkcs11.js');
  return openPkcs11Kms({ library, tokenLabel, pin, sessions: pkcs11.sessions, destroyWaitSeconds });
}
