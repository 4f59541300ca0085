import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { createMasterKeyFile } from '../kms/local.js';

export interface GlobalOptions {
  config?: string;
  dataDir?: string;
}

export function configFrom(options: GlobalOptions, port?: number): Config {
  return loadConfig({ file: options.config, overrides: { dataDir: options.dataDir, port } });
}

/**
 * Makes the data directory (0700) and, for the local KMS, its master key file when no master key
 * comes from the environment. Returns true when this is the directory's first use.
 */
export async function prepareDataDir(config: Config): Promise<boolean> {
  const firstUse = !existsSync(config.dataDir);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const local = config.kms.local;
  if (config.kms.provider === 'local' && !process.env[local.masterKeyEnv] && !existsSync(local.masterKeyFile!)) {
    mkdirSync(dirname(local.masterKeyFile!), { recursive: true, mode: 0o700 });
    await createMasterKeyFile(local.masterKeyFile!);
  }
  return firstUse;
}
