import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { configKeys, envName, loadConfig, maskedConfig } from '../../src/config/load.js';

test('environment names follow STRONGROOM_ + upper-case path with __ between levels', () => {
  assert.equal(envName(['auth', 'firebase', 'projectId']), 'STRONGROOM_AUTH__FIREBASE__PROJECT_ID');
  assert.equal(envName(['dataDir']), 'STRONGROOM_DATA_DIR');
});

test('environment values are typed by the schema', () => {
  const config = loadConfig({
    env: { STRONGROOM_SERVER__PORT: '9443', STRONGROOM_SERVER__TRUST_PROXY: 'true', STRONGROOM_SERVER__HTTP_PORT: '8080' },
    overrides: { dataDir: '/tmp/x' },
  });
  assert.equal(config.server.port, 9443);
  assert.equal(config.server.trustProxy, true);
  assert.equal(config.server.httpPort, 8080);
  assert.equal(config.database.sqlite.file, '/tmp/x/strongroom.db');
});

test('flags win over the environment', () => {
  const config = loadConfig({ env: { STRONGROOM_SERVER__PORT: '9443' }, overrides: { port: 7443 } });
  assert.equal(config.server.port, 7443);
});

test('a wrong type names the key', () => {
  assert.throws(() => loadConfig({ env: { STRONGROOM_SERVER__TRUST_PROXY: 'yes' } }), /server\.trustProxy/);
  assert.throws(() => loadConfig({ env: { STRONGROOM_DATABASE__DRIVER: 'mysql' } }), /database\.driver/);
});

test('secrets are masked, other values are not', () => {
  const config = loadConfig({ env: { STRONGROOM_DATABASE__POSTGRES__URL: 'postgres://u:pw@h/db' } });
  const masked = maskedConfig(config);
  assert.equal(masked.database.postgres.url, '********');
  assert.equal(masked.server.port, config.server.port);
  assert.equal(config.database.postgres.url, 'postgres://u:pw@h/db', 'masking does not touch the live configuration');
});

test('docs/configuration.md documents every key with its environment variable', () => {
  const doc = readFileSync(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');
  for (const key of configKeys()) {
    assert.ok(doc.includes(`| \`${key}\` | \`${envName(key.split('.'))}\``), `${key} is documented`);
  }
});
