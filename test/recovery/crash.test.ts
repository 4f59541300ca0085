// Point-in-time recovery survives kill -9 of whatever is running: the server while it ships the
// change log under a write load, a backup half-way through its parts, a restore half-way through
// its rows. Real processes (the CLI and `serve`), killed with SIGKILL. Keys and blob store live
// outside the data directory, as they would on another machine, so a restore starts from them alone.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { declareCollection } from '../../src/core/collections.js';
import type { Principal } from '../../src/core/context.js';
import { openCore } from '../../src/core/open-core.js';
import { putRecord } from '../../src/core/records.js';
import { takeBackup } from '../../src/core/recovery/backup.js';
import { restoreInto } from '../../src/core/recovery/restore.js';
import { shippingStatus, shipThrough } from '../../src/core/recovery/ship.js';
import { createTenant } from '../../src/core/tenants.js';
import { SYSTEM_CHAIN } from '../../src/core/audit-events.js';
import { backupPrefix } from '../../src/journal/backup-manifest.js';
import { openDatabase, type Database } from '../../src/store/db/open.js';
import { JOURNALED_TABLES } from '../../src/store/db/journaled-tables.js';
import { ownedDigest } from '../../src/store/db/owned-rows.js';
import { prepareDataDir } from '../../src/cli/runtime.js';
import { postgresEnv, runCli, spawnCli, spawnServer, tempDirs, type ServerProcess } from '../support/cli-process.js';
import { dropDatabase, emptyDatabase, shippingHeads, siteEnv, waitShippedAt, type DatabaseLocation } from '../support/recovery.js';
import { DRIVERS, freshPostgresUrl, stopPostgres, type Driver } from '../support/strongroom.js';
import { apiClient, compareWithLoad, readAllRecords, writeUntilKilled } from '../support/write-load.js';

after(stopPostgres);
const tempDir = tempDirs('strongroom-crash-');
const META = { requestId: 'test', sourceIp: 'local' };

/** A deployment: a data directory, its database, and keys and blobs in a folder of their own beside it. */
interface Site {
  dataDir: string;
  blobs: { primary: string; replica: string };
  database: DatabaseLocation;
  /** For every command on this deployment: the site's keys and blobs, and its database. */
  env: Record<string, string>;
}

async function newSite(driver: Driver, extraEnv: Record<string, string> = {}): Promise<Site> {
  const root = tempDir();
  const dataDir = join(root, 'data');
  const keysAndBlobs = siteEnv(root);
  const blobs = { primary: keysAndBlobs.STRONGROOM_BLOBS__PRIMARY__PATH!, replica: keysAndBlobs.STRONGROOM_BLOBS__REPLICA__PATH! };
  if (driver === 'sqlite') return { dataDir, blobs, database: { driver, file: join(dataDir, 'strongroom.db') }, env: { ...keysAndBlobs, ...extraEnv } };
  const url = await freshPostgresUrl();
  return { dataDir, blobs, database: { driver, url }, env: { ...keysAndBlobs, ...postgresEnv(url), ...extraEnv } };
}

/** The same keys and blobs with an empty database of `driver`'s kind: where a restore goes (`into`: a directory or a URL). */
async function restoredSite(site: Site, driver: Driver): Promise<Site & { into: string }> {
  const dataDir = tempDir();
  const shared = Object.fromEntries(Object.entries(site.env).filter(([name]) => !name.startsWith('STRONGROOM_DATABASE__')));
  if (driver === 'sqlite') return { ...site, dataDir, into: dataDir, database: { driver, file: join(dataDir, 'strongroom.db') }, env: shared };
  const url = await freshPostgresUrl();
  return { ...site, dataDir, into: url, database: { driver, url }, env: { ...shared, ...postgresEnv(url) } };
}

const configOf = (site: Site): Config => loadConfig({ env: site.env, overrides: { dataDir: site.dataDir } });

function openLocation(where: DatabaseLocation): Promise<Database> {
  return where.driver === 'sqlite' ? openDatabase({ driver: 'sqlite', file: where.file }) : openDatabase({ driver: 'postgres', url: where.url, sslMode: 'disable', caFile: null, poolSize: 2 });
}

/** Digests of what every owner (the system and each tenant) has in `db`. */
async function digestsOf(db: Database): Promise<Map<string, string>> {
  const owners = [SYSTEM_CHAIN, ...(await db.reader.selectFrom('tenants').select('id').orderBy('id').execute()).map((t) => t.id)];
  const digests = new Map<string, string>();
  for (const owner of owners) digests.set(owner, await ownedDigest(db.reader, owner));
  return digests;
}

/** How many rows the system owns: more than a backup's system part, restored before any tenant's, holds. */
async function systemRowsOf(db: Database): Promise<number> {
  let rows = 0;
  for (const table of JOURNALED_TABLES) {
    const { n } = (await sql<{ n: number | string }>`select count(*) as n from ${sql.table(table.name)} where ${sql.ref(table.tenantColumn)} = ${SYSTEM_CHAIN}`.execute(db.reader)).rows[0]!;
    rows += Number(n);
  }
  return rows;
}

/**
 * Ships whatever the live database journaled (a killed command's audit events included) until
 * nothing is left, shipping's own (the tenant key uses it audits) too; returns that sequence and
 * every owner's digest there. Nothing else writes: no server runs on the site meanwhile.
 */
async function shipEverything(site: Site): Promise<{ seq: number; timeline: string; digests: Map<string, string>; systemRows: number }> {
  const core = await openCore(configOf(site));
  try {
    for (;;) {
      const { journalSeq, shippedSeq, timeline } = await shippingStatus(core);
      if (shippedSeq >= journalSeq) return { seq: journalSeq, timeline, digests: await digestsOf(core.db), systemRows: await systemRowsOf(core.db) };
      await shipThrough(core, journalSeq);
    }
  } finally {
    await core.close();
  }
}

/** Polls `check` until it returns a value, failing after `timeoutMs`. */
async function until<T>(what: string, check: () => T | null | undefined, timeoutMs = 30_000, everyMs = 5): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = check();
    if (found !== null && found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

for (const driver of DRIVERS) {
  describe(`kill -9 during recovery work, on ${driver}`, () => {
    test('kill -9 of the server while it ships under a write load: after a restart, a restore into a new place has every acknowledged write, and its audit chains verify', { timeout: 120_000 }, async (t) => {
      const LOOPS = 16;
      // Shipping all the time: the kill lands while segments are being written.
      const site = await newSite(driver, { STRONGROOM_RECOVERY__SHIP_INTERVAL_MS: '50' });
      const servers: ServerProcess[] = [];
      try {
        const first = await spawnServer(site.dataDir, { env: site.env });
        servers.push(first);
        const created = await runCli(site.dataDir, ['tenant', 'create', 'shipping', '--json'], { env: site.env });
        assert.equal(created.code, 0, created.stderr);
        const { tenantId, apiKey } = JSON.parse(created.stdout) as { tenantId: string; apiKey: string };
        const base = `/v1/tenants/${tenantId}/collections/load`;
        const api = apiClient(first.url, readFileSync(join(site.dataDir, 'tls', 'ca-cert.pem')), apiKey, LOOPS * 2);
        assert.equal((await api.call('PUT', base, { indexes: [{ field: 'loop' }] })).status, 201);
        const outcome = await writeUntilKilled(api, base, LOOPS, { loadMs: 500, minAcknowledged: 100 }, () => first.kill9());
        await api.close();
        assert.deepEqual(outcome.refused, [], 'no write was refused under load');
        assert.ok(outcome.acknowledged.size >= 100, `a real load: ${outcome.acknowledged.size} records acknowledged`);
        const atKill = await shippingHeads(site.database);
        const journal = join(site.blobs.primary, 'journal');
        // The kill may come before the first segment is stored: then there is no journal folder yet.
        const unrecorded = (existsSync(journal) ? readdirSync(journal) : []).flatMap((timeline) => readdirSync(join(journal, timeline))).filter((name) => Number(name) > atKill.shippedSeq);
        t.diagnostic(`${outcome.acknowledged.size} records acknowledged; at the kill, ${atKill.journalSeq - atKill.shippedSeq} entries were journaled but not shipped, and ${unrecorded.length} segments stored but not recorded`);
        assert.ok(atKill.journalSeq > atKill.shippedSeq, 'the kill left journaled entries unshipped');

        const second = await spawnServer(site.dataDir, { env: site.env });
        servers.push(second);
        const shipped = await waitShippedAt(site.database).catch((error: Error) => {
          throw new Error(`${error.message}; the restarted server said:\n${second.stderr.join('').slice(-4000)}`);
        });
        await second.stop();

        // The disaster: the data directory and the database are lost; the keys and blobs beside them are not.
        rmSync(site.dataDir, { recursive: true, force: true });
        if (site.database.driver === 'postgres') await dropDatabase(site.database.url);
        const restored = await restoredSite(site, driver);
        const restore = await runCli(restored.dataDir, ['restore', '--to', 'latest', '--into', restored.into, '--json'], { env: restored.env, timeoutMs: 60_000 });
        assert.equal(restore.code, 0, restore.stderr);
        const result = JSON.parse(restore.stdout) as { seq: number; newTimeline: string };
        assert.ok(result.seq >= shipped, `restored through sequence ${result.seq}, shipped ${shipped}`);

        const third = await spawnServer(restored.dataDir, { env: restored.env });
        servers.push(third);
        const reader = apiClient(third.url, readFileSync(join(restored.dataDir, 'tls', 'ca-cert.pem')), apiKey);
        try {
          const found = compareWithLoad(outcome, await readAllRecords(reader, base));
          assert.deepEqual(found.missing, [], `acknowledged writes missing from the restore (${found.missing.length} of ${outcome.acknowledged.size})`);
          assert.deepEqual(found.wrong, [], 'acknowledged writes restored otherwise than acknowledged');
          assert.deepEqual(found.torn, [], 'a write in flight at the kill is restored whole or not at all');
          assert.deepEqual(found.unknown, [], 'no record is restored that was never written');
          // Life goes on: a new write is shipped on the new timeline, from the restored sequence.
          assert.equal((await reader.call('PUT', `${base}/records/after-restore`, { loop: -1, n: 0, pad: '', text: 'new timeline' })).status, 201);
          await waitShippedAt(restored.database);
          const segments = readdirSync(join(site.blobs.primary, 'journal', result.newTimeline));
          assert.equal(Number(segments.sort()[0]), result.seq + 1, 'the new timeline goes on from the restored sequence');
          assert.ok(existsSync(join(site.blobs.replica, 'timelines', result.newTimeline)), 'the blob store records the new timeline');
        } finally {
          await reader.close();
        }
        await third.stop();
        const verified = await runCli(restored.dataDir, ['audit', 'verify', '--json'], { env: restored.env });
        assert.equal(verified.code, 0, `${verified.stdout}${verified.stderr}`);
        const chains = JSON.parse(verified.stdout) as { ok: boolean; tenants: { tenantId: string; ok: boolean }[] };
        assert.equal(chains.ok, true);
        assert.ok(chains.tenants.some((c) => c.tenantId === tenantId && c.ok), "the tenant's restored chain verifies");
      } finally {
        for (const s of servers) await s.kill9();
      }
    });

    describe('with a populated deployment', () => {
      let site: Site;
      let olderBackup: string;

      before(async () => {
        site = await newSite(driver);
        const config = configOf(site);
        await prepareDataDir(config);
        const core = await openCore(config);
        try {
          // Few rows (the restores stay quick) but large ones (each backup part takes a while).
          const pad = 'x'.repeat(8000);
          for (let n = 0; n < 3; n++) {
            const { tenantId } = await createTenant(core, { kind: 'system', name: 'test' }, META, `big${n}`);
            const owner: Principal = { kind: 'api_key', tenantId, keyId: 'k_test', scopes: ['admin', 'write', 'read'] };
            await declareCollection(core, owner, META, tenantId, 'rows', []);
            for (let from = 0; from < 300; from += 100) {
              await Promise.all(Array.from({ length: 100 }, (_, i) => putRecord(core, owner, META, { tenantId, collection: 'rows', id: `r${from + i}` }, { i: from + i, pad })));
            }
            // The first tenant's rows are in a backup; the others only in the log.
            if (n === 0) olderBackup = (await takeBackup(core)).backupId;
          }
          const { journalSeq } = await shippingStatus(core);
          await shipThrough(core, journalSeq);
        } finally {
          await core.close();
        }
      });

      /** Restores the latest shipped state in-process into an empty database; returns the backup used, after comparing every owner's rows with the live database. */
      async function restoreMatchesLive(): Promise<string | null> {
        const live = await shipEverything(site);
        const target = await emptyDatabase(driver);
        const core = await openCore(configOf(site));
        try {
          const result = await restoreInto(core, target, { target: { seq: live.seq }, timeline: live.timeline, now: Date.now() });
          assert.deepEqual(await digestsOf(target), live.digests, 'the restore holds exactly what the live database holds');
          return result.backupId;
        } finally {
          await core.close();
          await target.close();
        }
      }

      test('kill -9 of a backup between its parts: no manifest, a restore ignores it, and the next backup succeeds and is used', { timeout: 120_000 }, async (t) => {
        const { timeline } = await shipEverything(site);
        const folder = join(site.blobs.primary, ...backupPrefix(timeline).split('/'));
        const started = (existsSync(folder) ? readdirSync(folder) : []).filter((id) => id !== olderBackup);
        assert.deepEqual(started, [], 'only the older backup so far');

        const backup = spawnCli(site.dataDir, ['backup', '--json'], { env: site.env });
        // The moment a part is stored (the system's comes first) and before the manifest: kill.
        const unfinished = await until('a stored backup part', () => {
          const ids = existsSync(folder) ? readdirSync(folder).filter((id) => id !== olderBackup) : [];
          const parts = ids.length === 1 ? readdirSync(join(folder, ids[0]!)).filter((name) => !name.startsWith('.tmp-')) : [];
          return parts.length > 0 ? ids[0]! : null;
        });
        const exit = await backup.kill9();
        assert.equal(exit.signal, 'SIGKILL', `the backup was killed, not finished: ${backup.output().stdout}`);
        for (const root of [site.blobs.primary, site.blobs.replica]) {
          const written = readdirSync(join(root, ...backupPrefix(timeline).split('/'), unfinished)).filter((name) => !name.startsWith('.tmp-'));
          assert.ok(!written.includes('manifest'), `no manifest in ${root}: ${written.join(', ')}`);
        }
        const partsWritten = readdirSync(join(folder, unfinished)).filter((name) => !name.startsWith('.tmp-'));
        assert.ok(partsWritten.length >= 1 && partsWritten.length < 4, `killed between parts: ${partsWritten.join(', ')} of 4 stored`);
        t.diagnostic(`backup killed with ${partsWritten.join(', ')} stored`);

        assert.equal(await restoreMatchesLive(), olderBackup, 'the restore starts from the older, finished backup, and replays the log after it');

        const next = await runCli(site.dataDir, ['backup', '--json'], { env: site.env, timeoutMs: 60_000 });
        assert.equal(next.code, 0, next.stderr);
        const { backupId } = JSON.parse(next.stdout) as { backupId: string };
        assert.ok(existsSync(join(folder, backupId, 'manifest')));
        assert.equal(await restoreMatchesLive(), backupId, 'the new backup is the one a restore starts from');
      });

      test('kill -9 of a restore half-way: the same place is refused as not empty, a fresh one gets the whole state', { timeout: 120_000 }, async (t) => {
        const live = await shipEverything(site);
        const killed = await restoredSite(site, driver);
        const restore = spawnCli(killed.dataDir, ['restore', '--to', 'latest', '--into', killed.into], { env: killed.env });
        // Progress lines read `restore: N rows from the backup, M log entries replayed`. Past the
        // system's part, which is committed on its own before any tenant's, and before the end.
        const under = await until('a restore under way', () => {
          const last = /restore: (\d+) rows from the backup, (\d+) log entries replayed\s*$/.exec(restore.output().stderr);
          return last && Number(last[1]) > live.systemRows + 100 ? last[0].trim() : null;
        });
        const exit = await restore.kill9();
        t.diagnostic(`restore killed after ${under}`);
        assert.equal(exit.signal, 'SIGKILL', `the restore was killed, not finished: ${restore.output().stdout}`);

        const again = await runCli(killed.dataDir, ['restore', '--to', 'latest', '--into', killed.into, '--json'], { env: killed.env, timeoutMs: 60_000 });
        assert.notEqual(again.code, 0, 'a restore into the half-restored place is refused');
        assert.match(again.stderr, driver === 'sqlite' ? /exists; restore into an empty directory/ : /not empty/);

        const fresh = await restoredSite(site, driver);
        const complete = await runCli(fresh.dataDir, ['restore', '--to', 'latest', '--into', fresh.into, '--json'], { env: fresh.env, timeoutMs: 60_000 });
        assert.equal(complete.code, 0, complete.stderr);
        assert.equal((JSON.parse(complete.stdout) as { seq: number }).seq, live.seq);
        const db = await openLocation(fresh.database);
        try {
          assert.deepEqual(await digestsOf(db), live.digests, 'the fresh restore holds exactly what the live database holds');
        } finally {
          await db.close();
        }
      });
    });
  });
}
