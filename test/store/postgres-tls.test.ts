import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { ensureLocalTls } from '../../src/http/tls/local-ca.js';
import { openDatabase } from '../../src/store/db/open.js';
import { startPostgres, type PostgresCluster } from '../support/postgres.js';

let dir: string;
let cluster: PostgresCluster;
let trusted: string;
let stranger: string;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strongroom-pgtls-'));
  const server = await ensureLocalTls(join(dir, 'server-ca'), { hostnames: ['localhost'] });
  trusted = server.caCertFile;
  stranger = (await ensureLocalTls(join(dir, 'other-ca'), { hostnames: ['localhost'] })).caCertFile;
  cluster = await startPostgres({ tls: { certFile: server.certFile, keyFile: server.keyFile } });
});
after(async () => {
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('verify-full connects over TLS to a server whose certificate chains to the configured CA', async () => {
  const db = await openDatabase({ driver: 'postgres', url: cluster.connectionString, sslMode: 'verify-full', caFile: trusted, poolSize: 2 });
  try {
    const { rows } = await sql<{ ssl: boolean }>`select ssl from pg_stat_ssl where pid = pg_backend_pid()`.execute(db.reader);
    assert.equal(rows[0]?.ssl, true);
  } finally {
    await db.close();
  }
});

test('verify-full refuses a server certificate from another CA', async () => {
  await assert.rejects(
    openDatabase({ driver: 'postgres', url: cluster.connectionString, sslMode: 'verify-full', caFile: stranger, poolSize: 2 }),
    /self[- ]signed|unable to verify|certificate/i,
  );
});
