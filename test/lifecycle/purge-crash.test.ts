// kill -9 in the middle of a purge (issue 8): `strongroom tenant purge` is killed while it deletes
// the tenant's blobs; run again, it finishes from where the first left off, nothing of the tenant
// remains, the other tenant is whole, and the certificate counts what the tenant held.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { loadConfig } from '../../src/config/load.js';
import { declareCollection } from '../../src/core/collections.js';
import type { Principal } from '../../src/core/context.js';
import { putFile } from '../../src/core/files/file-writes.js';
import { openCore } from '../../src/core/open-core.js';
import { putRecord } from '../../src/core/records.js';
import { createTenant } from '../../src/core/tenants.js';
import { SYSTEM_CHAIN } from '../../src/core/audit-events.js';
import { JOURNALED_TABLES } from '../../src/store/db/journaled-tables.js';
import { prepareDataDir } from '../../src/cli/runtime.js';
import { postgresEnv, runCli, spawnCli, tempDirs } from '../support/cli-process.js';
import { siteEnv } from '../support/recovery.js';
import { DRIVERS, freshPostgresUrl, stopPostgres } from '../support/strongroom.js';

after(stopPostgres);
const tempDir = tempDirs('strongroom-purge-crash-');
const META = { requestId: 'test', sourceIp: 'local' };
const FILES = 120;

for (const driver of DRIVERS) {
  describe(`kill -9 during a purge, on ${driver}`, () => {
    test('the purge killed while it deletes blobs finishes on the next run, and its certificate counts what the tenant held', { timeout: 180_000 }, async (t) => {
      const root = tempDir();
      const dataDir = join(root, 'data');
      const env: Record<string, string> = { ...siteEnv(root), STRONGROOM_KMS__DESTROY_WAIT_SECONDS: '0' };
      if (driver === 'postgres') Object.assign(env, postgresEnv(await freshPostgresUrl()));
      const config = loadConfig({ env, overrides: { dataDir } });
      await prepareDataDir(config);

      let core = await openCore(config);
      const tenants: string[] = [];
      try {
        for (const name of ['ending', 'staying']) {
          const { tenantId } = await createTenant(core, { kind: 'system', name: 'test' }, META, name);
          tenants.push(tenantId);
          const owner: Principal = { kind: 'api_key', tenantId, keyId: 'k_test', scopes: ['admin', 'write', 'read'] };
          await declareCollection(core, owner, META, tenantId, 'rows', []);
          for (let i = 0; i < 20; i++) await putRecord(core, owner, META, { tenantId, collection: 'rows', id: `r${i}` }, { i });
          // Many small blobs: the purge spends its time deleting them, where the kill lands.
          for (let from = 0; from < FILES; from += 20) {
            await Promise.all(
              Array.from({ length: 20 }, (_, i) => putFile(core, owner, META, { tenantId, path: `docs/f${from + i}.txt` }, Readable.from([Buffer.from(`file ${from + i}`)]), { contentType: 'text/plain' })),
            );
          }
        }
      } finally {
        await core.close();
      }
      const [ending, staying] = tenants as [string, string];
      // The machine's operator terminates from the CLI (and may cancel until the purge date).
      const cli = async (args: string[]) => {
        const result = await runCli(dataDir, ['tenant', ...args, '--tenant', ending, '--json'], { env });
        assert.equal(result.code, 0, result.stderr);
        return JSON.parse(result.stdout);
      };
      assert.equal((await cli(['terminate', '--reason', 'contract ended'])).status, 'terminated');
      assert.equal((await cli(['cancel-termination'])).status, 'active');
      assert.equal((await cli(['terminate', '--reason', 'contract ended, for good'])).status, 'terminated');
      core = await openCore(config);
      try {
        // Time travel: the purge date is now past, by the database's clock.
        await core.committer.submit(SYSTEM_CHAIN, (tx) => tx.updateTable('tenants').set({ purge_after: 0 }).where('id', '=', ending).execute());
      } finally {
        await core.close();
      }
      const blobDir = (tenantId: string, copy: 'primary' | 'replica') => join(root, 'blobs', copy, 'files', tenantId);
      const blobCount = (tenantId: string, copy: 'primary' | 'replica') => (existsSync(blobDir(tenantId, copy)) ? readdirSync(blobDir(tenantId, copy)).length : 0);
      assert.equal(blobCount(ending, 'primary'), FILES);

      const first = spawnCli(dataDir, ['tenant', 'purge', '--tenant', ending], { env });
      // Once the key is scheduled, blobs start to go: kill while some, not all, are deleted.
      const deadline = Date.now() + 60_000;
      while (!(blobCount(ending, 'primary') < FILES && blobCount(ending, 'primary') > 0)) {
        if (Date.now() > deadline) throw new Error(`the purge never reached its blobs: ${first.output().stderr}`);
        await sleep(2);
      }
      const killed = await first.kill9();
      t.diagnostic(`killed after: ${first.output().stderr.trim().split('\n').join(', ')}; ${blobCount(ending, 'primary')} of ${FILES} blobs left on the primary`);
      assert.equal(killed.signal, 'SIGKILL', 'killed mid-way, not finished');

      const second = await runCli(dataDir, ['tenant', 'purge', '--json'], { env, timeoutMs: 120_000 });
      assert.equal(second.code, 0, second.stderr);
      assert.deepEqual(JSON.parse(second.stdout), { purges: [{ tenantId: ending, step: 'purged' }] }, 'the due purge is found and finished');

      core = await openCore(config);
      try {
        for (const copy of ['primary', 'replica'] as const) {
          assert.equal(blobCount(ending, copy), 0, `no blob left on the ${copy}`);
          assert.equal(blobCount(staying, copy), FILES, `the other tenant's blobs on the ${copy}`);
        }
        for (const table of JOURNALED_TABLES) {
          if (table.name === 'tenants' || table.name === 'members') continue;
          const rows = await core.db.reader.selectFrom(table.name).select((eb) => eb.fn.countAll<number>().as('n')).where(sql.ref(table.tenantColumn), '=', ending).executeTakeFirstOrThrow();
          assert.equal(Number(rows.n), 0, `nothing of it in ${table.name}`);
        }
        assert.equal((await core.db.reader.selectFrom('records').select('record_key').where('tenant_id', '=', staying).execute()).length, 20);
      } finally {
        await core.close();
      }
      const certificate = await runCli(dataDir, ['tenant', 'certificate', '--tenant', ending, '--json'], { env });
      assert.equal(certificate.code, 0, certificate.stderr);
      const { deleted } = JSON.parse(certificate.stdout).certificate;
      assert.deepEqual(
        { records: deleted.records, recordVersions: deleted.recordVersions, files: deleted.files, fileVersions: deleted.fileVersions, blobs: deleted.blobs },
        { records: 20, recordVersions: 20, files: FILES, fileVersions: FILES, blobs: FILES },
      );
    });
  });
}
