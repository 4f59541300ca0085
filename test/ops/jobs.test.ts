import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../src/config/load.js';
import { openCore } from '../../src/core/open-core.js';
import { dataKeyVersions } from '../../src/core/key-rotation.js';
import { prepareDataDir } from '../../src/cli/runtime.js';
import { startJobRunner, type Job } from '../../src/ops/jobs.js';
import { tempDirs } from '../support/cli-process.js';
import { freshPostgresUrl, startHarness, stopPostgres } from '../support/strongroom.js';

after(stopPostgres);
const tempDir = tempDirs('strongroom-jobs-');

/** Two "instances": two cores on one PostgreSQL database, as two servers would share it, on a clock the test moves. */
async function twoInstances(now: () => number = Date.now) {
  const url = await freshPostgresUrl();
  const dataDir = tempDir();
  const config = loadConfig({ env: { STRONGROOM_DATABASE__DRIVER: 'postgres', STRONGROOM_DATABASE__POSTGRES__URL: url, STRONGROOM_DATABASE__POSTGRES__SSL_MODE: 'disable' }, overrides: { dataDir } });
  await prepareDataDir(config);
  return [await openCore(config, now), await openCore(config, now)] as const;
}

/** Waits until `done()` holds, checking every 20 ms, for at most 10 s. */
async function until(done: () => boolean): Promise<void> {
  for (let waited = 0; !done() && waited < 10_000; waited += 20) await sleep(20);
}

test('instances sharing a database never run a job at the same time, and each run is recorded', async () => {
  const [a, b] = await twoInstances();
  let active = 0;
  let most = 0;
  let runs = 0;
  const job: Job = {
    name: 'test.exclusive',
    everyMs: 50,
    run: async () => {
      active += 1;
      most = Math.max(most, active);
      await sleep(40);
      active -= 1;
      runs += 1;
      return `run ${runs}`;
    },
  };
  const runners = [startJobRunner(a, [job], { tickMs: 10 }), startJobRunner(b, [job], { tickMs: 10 })];
  await until(() => runs >= 5);
  await Promise.all(runners.map((r) => r.stop()));
  assert.ok(runs >= 5, `${runs} runs`);
  assert.equal(most, 1, 'never two runs at once');
  const row = await a.db.reader.selectFrom('job_schedule').selectAll().where('name', '=', job.name).executeTakeFirstOrThrow();
  assert.equal(row.last_ok, 1);
  assert.match(row.last_result!, /^run \d+$/);
  assert.equal(row.lease_owner, null, 'the lease is given back');
  await a.close();
  await b.close();
});

test('a lease left by a killed instance expires and another instance takes the job over; a failure is recorded', async () => {
  let offset = 0;
  const clock = () => Date.now() + offset;
  const [a, b] = await twoInstances(clock);
  let ran = 0;
  const job: Job = {
    name: 'test.takeover',
    everyMs: 60_000,
    run: async () => {
      ran += 1;
      throw new Error('the job broke');
    },
  };
  await a.committer.submit('_system', (tx) => tx.insertInto('job_schedule').values({ name: job.name, next_run_at: 0, lease_owner: 'killed-instance', lease_until: clock() + 60_000 }).execute());
  const runner = startJobRunner(b, [job], { tickMs: 20 });
  await sleep(200);
  assert.equal(ran, 0, 'not while the dead instance still holds the lease');
  offset += 61_000;
  await until(() => ran > 0);
  await sleep(200);
  await runner.stop();
  assert.equal(ran, 1, 'taken over once the lease expired, and not again before it is due');
  const row = await a.db.reader.selectFrom('job_schedule').selectAll().where('name', '=', job.name).executeTakeFirstOrThrow();
  assert.equal(row.last_ok, 0);
  assert.equal(row.last_result, 'failed: the job broke');
  assert.ok(Number(row.next_run_at) > clock() + 50_000, 'a failed run waits for its next turn');
  await a.close();
  await b.close();
});

test("the server rotates KEKs older than keys.kekRotationDays and re-wraps their data keys", async () => {
  let offset = 0;
  const h = await startHarness('sqlite', { now: () => Date.now() + offset, env: { STRONGROOM_KEYS__KEK_ROTATION_DAYS: '90' } });
  try {
    const t = await h.tenant('aging');
    // The server's own schedule may hold the job for a moment: runNow answers null then.
    const runNow = async (name: string): Promise<string> => (await h.server.jobs.runNow(name)) ?? (await sleep(20), runNow(name));
    assert.equal(await runNow('keys.rotate-due'), '0 keys rotated; 0 data keys and 0 secrets re-wrapped');
    offset += 91 * 24 * 3600 * 1000;
    assert.equal(await runNow('keys.rotate-due'), '1 keys rotated; 2 data keys and 0 secrets re-wrapped');
    const [versions] = await dataKeyVersions(h.core);
    assert.deepEqual(versions, { tenantId: t.tenantId, primary: 2, dataKeys: { 2: 2 } });
    h.core.keyring.clear();
    assert.equal((await h.call('GET', `/v1/tenants/${t.tenantId}`, { key: t.apiKey })).status, 200);
  } finally {
    await h.close();
  }
});
