// Invariant 3: the audit chain verifies, and tampering is detected. Each test tampers with the
// audit rows directly in the database (as someone with database access would), checks that
// verification fails naming the right event, then restores the rows and checks the chain verifies
// again, so the tests stay independent. The CLI's `audit verify` is checked the same way.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Selectable } from 'kysely';
import { verifyAuditChain } from '../../src/audit/verify.js';
import type { AuditEventsTable } from '../../src/store/db/tables.js';
import { postgresEnv, runCli } from '../support/cli-process.js';
import { DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

after(stopPostgres);

type AuditRow = Selectable<AuditEventsTable>;

for (const driver of DRIVERS) {
  describe(`audit chain tampering on ${driver}`, () => {
    let h: Harness;
    let tenantId: string;
    let other: string;
    let events: number;

    const db = () => h.core.db.writer;
    const row = async (seq: number): Promise<AuditRow> =>
      db().selectFrom('audit_events').selectAll().where('tenant_id', '=', tenantId).where('seq', '=', seq).executeTakeFirstOrThrow();
    const update = (seq: number, values: Partial<AuditRow>) =>
      db().updateTable('audit_events').set(values).where('tenant_id', '=', tenantId).where('seq', '=', seq).execute();
    /** Every column but the key (tenant_id, seq): what an event says. */
    const contents = (r: AuditRow): Partial<AuditRow> => ({
      at: r.at,
      actor: r.actor,
      action: r.action,
      target: r.target,
      result: r.result,
      request_id: r.request_id,
      source_ip: r.source_ip,
      prev_hash: r.prev_hash,
      hash: r.hash,
    });
    const verify = () => verifyAuditChain(h.core.db.reader, tenantId);
    const assertIntact = async () => {
      const result = await verify();
      assert.deepEqual(result, { ok: true, tenantId, events });
    };
    const assertDetected = async (seq: number, reason: RegExp) => {
      const result = await verify();
      assert.equal(result.ok, false, `tampering at event ${seq} goes unnoticed`);
      assert.equal(result.ok === false && result.seq, seq, `the failure names event ${seq}: ${JSON.stringify(result)}`);
      assert.match(result.ok === false ? result.reason : '', reason);
    };
    const cliEnv = () => (driver === 'postgres' ? postgresEnv(h.config.database.postgres.url!) : {});

    before(async () => {
      h = await startHarness(driver);
      const t = await h.tenant('tamper');
      tenantId = t.tenantId;
      other = (await h.tenant('bystander')).tenantId;
      const base = `/v1/tenants/${tenantId}/collections/ledger`;
      assert.equal((await h.call('PUT', base, { key: t.apiKey, body: { indexes: [{ field: 'kind' }] } })).status, 201);
      for (let i = 0; i < 8; i++) {
        assert.equal((await h.call('PUT', `${base}/records/r${i}`, { key: t.apiKey, body: { kind: 'entry', n: i } })).status, 201);
        assert.equal((await h.call('GET', `${base}/records/r${i}`, { key: t.apiKey })).status, 200);
      }
      assert.equal((await h.call('DELETE', `${base}/records/r0`, { key: t.apiKey })).status, 204);
      const head = await h.core.db.reader.selectFrom('tenant_heads').select('audit_seq').where('tenant_id', '=', tenantId).executeTakeFirstOrThrow();
      events = Number(head.audit_seq);
      assert.ok(events >= 15, `${events} events to tamper with`);
    });
    after(() => h.close());

    test('an untampered chain verifies, with every event counted', async () => {
      await assertIntact();
      const bystander = await verifyAuditChain(h.core.db.reader, other);
      assert.equal(bystander.ok, true);
    });

    test("editing one event's action is detected at that event", async () => {
      const seq = Math.floor(events / 2);
      const original = await row(seq);
      try {
        await update(seq, { action: original.action === 'record.get' ? 'record.put' : 'record.get' });
        await assertDetected(seq, /modified/);
      } finally {
        await update(seq, { action: original.action });
      }
      await assertIntact();
    });

    test('editing any column of an event is detected at that event', async () => {
      const seq = 5;
      const original = await row(seq);
      const flip = (b: Buffer) => Buffer.from(b.map((byte, i) => (i === b.length - 1 ? byte ^ 1 : byte)));
      const edits: Partial<AuditRow>[] = [
        { at: Number(original.at) + 1 },
        { actor: 'operator:someone-else' },
        { target: flip(original.target) },
        { result: original.result === 'ok' ? 'denied' : 'ok' },
        { request_id: 'forged-request' },
        { source_ip: '203.0.113.7' },
        { hash: flip(original.hash) },
        { prev_hash: flip(original.prev_hash) },
      ];
      for (const edit of edits) {
        try {
          await update(seq, edit);
          await assertDetected(seq, /modified|does not link/);
        } finally {
          await update(seq, contents(original));
        }
      }
      await assertIntact();
    });

    test('deleting an event in the middle is detected at the missing event', async () => {
      const seq = Math.floor(events / 2) + 1;
      const original = await row(seq);
      try {
        await db().deleteFrom('audit_events').where('tenant_id', '=', tenantId).where('seq', '=', seq).execute();
        await assertDetected(seq, /missing/);
      } finally {
        await db().insertInto('audit_events').values(original).execute();
      }
      await assertIntact();
    });

    test('deleting the last event is detected against the chain head', async () => {
      const original = await row(events);
      try {
        await db().deleteFrom('audit_events').where('tenant_id', '=', tenantId).where('seq', '=', events).execute();
        await assertDetected(events, /removed/);
      } finally {
        await db().insertInto('audit_events').values(original).execute();
      }
      await assertIntact();
    });

    test("swapping two events' contents (reordering) is detected at the earlier one", async () => {
      const [first, second] = [4, 9];
      const a = await row(first);
      const b = await row(second);
      try {
        await update(first, contents(b));
        await update(second, contents(a));
        await assertDetected(first, /does not link|modified/);
      } finally {
        await update(first, contents(a));
        await update(second, contents(b));
      }
      await assertIntact();
    });

    test('`strongroom audit verify` exits 0 on intact chains and non-zero naming the tampered event', async () => {
      const dir = h.config.dataDir;
      const intact = await runCli(dir, ['audit', 'verify'], { env: cliEnv() });
      assert.equal(intact.code, 0, `${intact.stdout}${intact.stderr}`);
      assert.match(intact.stdout, new RegExp(`ok\\s+${tenantId}: ${events} events`));
      assert.match(intact.stdout, new RegExp(`ok\\s+${other}:`));

      const seq = 7;
      const original = await row(seq);
      try {
        await update(seq, { action: 'tenant.create' });
        const failed = await runCli(dir, ['audit', 'verify'], { env: cliEnv() });
        assert.notEqual(failed.code, 0, 'audit verify fails');
        assert.equal(failed.signal, null);
        assert.match(failed.stdout, new RegExp(`FAILED\\s+${tenantId}: event ${seq}\\b`), failed.stdout + failed.stderr);
        assert.match(failed.stdout, new RegExp(`ok\\s+${other}:`), 'the other tenant still verifies');

        const json = await runCli(dir, ['audit', 'verify', '--tenant', tenantId, '--json'], { env: cliEnv() });
        assert.notEqual(json.code, 0);
        const report = JSON.parse(json.stdout) as { ok: boolean; tenants: { tenantId: string; ok: boolean; seq?: number }[] };
        assert.equal(report.ok, false);
        assert.deepEqual(report.tenants.map((t) => [t.tenantId, t.ok, t.seq]), [[tenantId, false, seq]]);
      } finally {
        await update(seq, { action: original.action });
      }
      await assertIntact();
    });
  });
}
