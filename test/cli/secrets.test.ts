import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
import { runCli, tempDirs } from '../support/cli-process.js';
import { filesUnder, scanFiles } from '../support/disk-scan.js';
import { freshPostgresUrl, stopPostgres } from '../support/strongroom.js';

after(stopPostgres);

const tempDir = tempDirs('strongroom-secrets-');

test('secrets set reads the value from standard input; list shows names and dates, never values; nothing at rest holds it', async () => {
  const dir = tempDir();
  const value = `smtp-password-${Date.now()}-do-not-leak`;
  const set = await runCli(dir, ['secrets', 'set', 'smtp-password'], { input: `${value}\n` });
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /refer to it as secret:smtp-password/);
  assert.ok(!`${set.stdout}${set.stderr}`.includes(value));

  const list = await runCli(dir, ['secrets', 'list', '--json']);
  assert.equal(list.code, 0, list.stderr);
  const listed = JSON.parse(list.stdout).secrets;
  assert.deepEqual(listed.map((s: { name: string }) => s.name), ['smtp-password']);
  assert.ok(!list.stdout.includes(value));

  assert.equal(statSync(join(dir, 'secrets.json')).mode & 0o777, 0o600);
  const scan = scanFiles(filesUnder(dir), [value, Buffer.from(value).toString('base64')]);
  assert.ok(scan.files >= 3);
  assert.equal(scan.found.size, 0, 'the value is nowhere in the data directory');

  assert.equal((await runCli(dir, ['secrets', 'set', 'Bad Name'], { input: 'x' })).code, 2);
  assert.equal((await runCli(dir, ['secrets', 'set', 'empty'], { input: '' })).code, 2);
  const deleted = await runCli(dir, ['secrets', 'delete', 'smtp-password']);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.deepEqual(JSON.parse((await runCli(dir, ['secrets', 'list', '--json'])).stdout).secrets, []);
});

test('the database URL can be secret:NAME: the CLI opens PostgreSQL through the secret; an unset one is named', async () => {
  const dir = tempDir();
  const url = await freshPostgresUrl();
  assert.equal((await runCli(dir, ['secrets', 'set', 'pg-url'], { input: url })).code, 0);
  const env = { STRONGROOM_DATABASE__DRIVER: 'postgres', STRONGROOM_DATABASE__POSTGRES__SSL_MODE: 'disable' };
  const created = await runCli(dir, ['tenant', 'create', 'acme', '--json'], { env: { ...env, STRONGROOM_DATABASE__POSTGRES__URL: 'secret:pg-url' } });
  assert.equal(created.code, 0, created.stderr);
  assert.match(JSON.parse(created.stdout).tenantId, /^t_/);
  // Opening the secret used the system key: that use is in the system audit chain, which verifies.
  const verified = await runCli(dir, ['audit', 'verify', '--json'], { env: { ...env, STRONGROOM_DATABASE__POSTGRES__URL: 'secret:pg-url' } });
  assert.equal(verified.code, 0, verified.stderr);
  const system = JSON.parse(verified.stdout).tenants.find((t: { tenantId: string }) => t.tenantId === '_system');
  assert.equal(system.ok, true);
  assert.equal(system.events, 2, 'one key use per start: tenant create, then audit verify');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ target: Buffer; actor: string; action: string }>("select target, actor, action from audit_events where tenant_id = '_system' order by seq");
    assert.deepEqual(
      rows.map((r) => [r.actor, r.action, r.target.subarray(1).toString('utf8')]),
      Array(2).fill(['system:keyring', 'kms.unwrap', 'system.secrets secret:pg-url purpose:read kek-version:1']),
    );
  } finally {
    await client.end();
  }
  const missing = await runCli(dir, ['tenant', 'create', 'acme', '--json'], { env: { ...env, STRONGROOM_DATABASE__POSTGRES__URL: 'secret:pg-url-2' } });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /database\.postgres\.url: refers to the secret pg-url-2, which is not set/);
});

test('in production mode a plain secret in the configuration file is refused; a secret:NAME reference is accepted', async () => {
  const dir = tempDir();
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ mode: 'production', database: { postgres: { url: 'postgres://app:hunter2@db/app' } } }));
  const plain = await runCli(dir, ['--config', file, 'config', 'print']);
  assert.equal(plain.code, 2);
  assert.match(plain.stderr, /database\.postgres\.url: holds a secret in the configuration file/);
  assert.ok(!plain.stderr.includes('hunter2'), 'the refusal does not repeat the secret');
  writeFileSync(file, JSON.stringify({ mode: 'production', database: { postgres: { url: 'secret:pg-url' } } }));
  const ref = await runCli(dir, ['--config', file, 'config', 'print']);
  assert.equal(ref.code, 0, ref.stderr);
  assert.equal(JSON.parse(ref.stdout).database.postgres.url, '********');
  assert.ok(readFileSync(file, 'utf8').includes('secret:pg-url'));
});
