import { secretRefs, withSecretValues } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { ConfigError, NotFoundError } from '../errors.js';
import type { SecretStore } from './store.js';

/** The configuration with every `secret:NAME` reference replaced by the secret's value. */
export async function resolveSecrets(config: Config, store: SecretStore): Promise<Config> {
  const refs = secretRefs(config);
  if (refs.length === 0) return config;
  const values: { path: string[]; value: string }[] = [];
  for (const { path, name } of refs) {
    try {
      values.push({ path, value: (await store.get(name)).toString('utf8') });
    } catch (error) {
      if (error instanceof NotFoundError) throw new ConfigError(path.join('.'), `refers to the secret ${name}, which is not set: strongroom secrets set ${name}`);
      throw error;
    }
  }
  return withSecretValues(config, values);
}
