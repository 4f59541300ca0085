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

test('rules across keys: no emulator in production; operators come from a trusted issuer, by subject or by domain', () => {
  const emulator = { STRONGROOM_AUTH__FIREBASE__PROJECT_ID: 'demo-x', STRONGROOM_AUTH__FIREBASE__EMULATOR_HOST: '127.0.0.1:9099' };
  assert.equal(loadConfig({ env: emulator }).auth.firebase.emulatorHost, '127.0.0.1:9099');
  assert.throws(() => loadConfig({ env: { ...emulator, STRONGROOM_MODE: 'production' } }), /auth\.firebase\.emulatorHost: the Firebase Auth emulator is not allowed in production/);
  const operators = (entries: unknown[]) => ({ ...emulator, STRONGROOM_OPERATORS__IDENTITIES: JSON.stringify(entries) });
  const firebase = 'https://securetoken.google.com/demo-x';
  assert.equal(loadConfig({ env: operators([{ issuer: firebase, subject: 'u1', roles: ['sre'] }]) }).operators.identities.length, 1);
  assert.throws(() => loadConfig({ env: operators([{ issuer: 'https://idp.example', subject: 'u1', roles: ['sre'] }]) }), /operators\.identities\.0\.issuer: is not a trusted issuer/);
  assert.throws(() => loadConfig({ env: operators([{ issuer: firebase, subject: 'u1', emailDomain: 'x.example', roles: ['sre'] }]) }), /operators\.identities\.0: needs exactly one/);
  assert.throws(() => loadConfig({ env: operators([{ issuer: firebase, roles: ['sre'] }]) }), /operators\.identities\.0: needs exactly one/);
  assert.throws(() => loadConfig({ env: operators([{ issuer: firebase, subject: 'u1', roles: ['root'] }]) }), /operators\.identities/);
  assert.throws(() => loadConfig({ env: operators([{ issuer: firebase, subject: 'u1', roles: [] }]) }), /operators\.identities/);
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
