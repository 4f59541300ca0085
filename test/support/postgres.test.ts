import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { test } from 'node:test';
import pg from 'pg';
import { createDatabase, startPostgres } from './postgres.js';

test('startPostgres runs a throwaway cluster that stop() removes', async (t) => {
  const started = Date.now();
  const cluster = await startPostgres();
  let stopped = false;
  try {
    t.diagnostic(`postgres harness: cluster up in ${Date.now() - started} ms on port ${cluster.port}`);
    assert.ok(existsSync(cluster.dataDir));
    assert.equal(statSync(cluster.dataDir).mode & 0o077, 0, 'data dir is private');
    assert.ok(!existsSync(`${cluster.baseDir}/pwfile`), 'password file is deleted after initdb');
    assert.notEqual(cluster.port, 5432);

    const url = new URL(cluster.connectionString);
    assert.equal(url.protocol, 'postgres:');
    assert.equal(url.hostname, '127.0.0.1');
    assert.equal(url.username, 'strongroom');
    assert.equal(Number(url.port), cluster.port);

    const client = new pg.Client({ connectionString: cluster.connectionString });
    await client.connect();
    try {
      const { rows } = await client.query<{ version: string }>('select version()');
      assert.match(rows[0]?.version ?? '', /^PostgreSQL \d+/);
      const settings = await client.query<{ name: string; setting: string }>(
        `select name, setting from pg_settings
          where name in ('fsync', 'synchronous_commit', 'listen_addresses', 'password_encryption')`,
      );
      const setting = Object.fromEntries(settings.rows.map((row) => [row.name, row.setting]));
      assert.deepEqual(setting, {
        fsync: 'on',
        listen_addresses: '127.0.0.1',
        password_encryption: 'scram-sha-256',
        synchronous_commit: 'on',
      });
    } finally {
      await client.end();
    }

    // A wrong password is refused: authentication is really on.
    const wrong = new URL(cluster.connectionString);
    wrong.password = 'not-the-password';
    const intruder = new pg.Client({ connectionString: wrong.toString() });
    await assert.rejects(intruder.connect(), /password authentication failed/);

    const dbUrl = await createDatabase(cluster.connectionString, 'harness_check');
    assert.equal(new URL(dbUrl).pathname, '/harness_check');
    const db = new pg.Client({ connectionString: dbUrl });
    await db.connect();
    try {
      const { rows } = await db.query<{ db: string }>('select current_database() as db');
      assert.equal(rows[0]?.db, 'harness_check');
    } finally {
      await db.end();
    }
    await assert.rejects(createDatabase(cluster.connectionString, 'x"; drop database postgres; --'), /invalid database name/);

    await cluster.stop();
    stopped = true;
    assert.ok(!existsSync(cluster.dataDir), 'data dir is removed');
    assert.ok(!existsSync(cluster.baseDir), 'base dir is removed');
    await cluster.stop(); // a second stop is harmless
  } finally {
    if (!stopped) await cluster.stop();
  }
});
