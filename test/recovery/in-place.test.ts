// In-place tenant restore (issue 7): an `sre` operator rewinds one tenant's records and files to a
// journal sequence over the API while another tenant keeps writing; the tenant's members, API keys
// and audit log are history the restore never rewinds; the undo bookmark undoes it exactly.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { listSegments } from '../../src/core/recovery/catalog.js';
import { restoreInto } from '../../src/core/recovery/restore.js';
import { shipPending, shippingStatus, type ShipResult } from '../../src/core/recovery/ship.js';
import { RESTORED_TABLES } from '../../src/core/recovery/tenant-restore.js';
import { ownedDigest } from '../../src/store/db/owned-rows.js';
import { startIdentityProviders, type IdentityProviders } from '../support/identity-providers.js';
import { emptyDatabase, waitFor, waitShipped } from '../support/recovery.js';
import { DRIVERS, startHarness, stopPostgres, type Harness, type Response } from '../support/strongroom.js';

after(stopPostgres);

let idp: IdentityProviders;
before(async () => {
  idp = await startIdentityProviders();
});
after(() => idp.close());

type Doc = Record<string, unknown>;
const WRITERS = 4;

/** Another tenant writing without pause: each writer its own new records, every third write replacing its counter record. */
interface Bystander {
  /** The last acknowledged write of each record. */
  acknowledged: Map<string, { version: number; data: Doc }>;
  failures: string[];
  /** Set while something runs: writes both sent and acknowledged then are counted. */
  during: boolean;
  acknowledgedDuring: number;
  stop(): Promise<void>;
}

function startBystander(h: Harness, tenant: { tenantId: string; apiKey: string }, collection: string): Bystander {
  let stopped = false;
  const state: Bystander = {
    acknowledged: new Map(),
    failures: [],
    during: false,
    acknowledgedDuring: 0,
    async stop() {
      stopped = true;
      await writers;
    },
  };
  const writer = async (w: number) => {
    for (let n = 0; !stopped; n++) {
      const id = n % 3 === 2 ? `w${w}-counter` : `w${w}-n${n}`;
      const data = { w, n, text: `bystander ${n}` };
      const sentDuring = state.during;
      const res = await h.call('PUT', `/v1/tenants/${tenant.tenantId}/collections/${collection}/records/${id}`, { key: tenant.apiKey, body: data });
      if (res.status !== 200 && res.status !== 201) state.failures.push(`${id}: ${res.status} ${res.text}`);
      else {
        state.acknowledged.set(id, { version: res.json.version, data });
        if (sentDuring && state.during) state.acknowledgedDuring += 1;
      }
    }
  };
  const writers = Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
  return state;
}

for (const driver of DRIVERS) {
  describe(`in-place tenant restore on ${driver}`, () => {
    let h: Harness;
    let a: { tenantId: string; apiKey: string };
    let b: { tenantId: string; apiKey: string };
    let aBase: string;
    /** The journal sequence S the tenant is restored to, and its records, files and digest then. */
    let s: number;
    let digestAtS: string;
    const recordsAtS = new Map<string, Doc | null>();
    const filesAtS = new Map<string, Buffer | null>();
    /** Keys and members as they were just before the restore, which it must leave as they are. */
    let keysDigest: string;
    let keptKey: string;
    let revokedKey: string;
    /** The tenant as the "break" left it, and the restore's undo bookmark. */
    let brokenDigest: string;
    let undoBookmark: number;

    const operator = async (sub: string) => `Bearer ${await idp.oidcToken({ sub, amr: ['pwd', 'otp'] })}`;
    const restore = async (sub: string, body: unknown) =>
      h.call('POST', `/v1/ops/tenants/${a.tenantId}/restore`, { headers: { authorization: await operator(sub) }, body });
    const restoredDigest = () => ownedDigest(h.core.db.reader, a.tenantId, RESTORED_TABLES);
    const keysAndMembers = () => ownedDigest(h.core.db.reader, a.tenantId, ['members', 'api_keys']);
    const ok = async (res: Promise<{ status: number; text: string }>, status: number) => {
      const r = await res;
      assert.equal(r.status, status, r.text);
    };
    const putRecord = (collection: string, id: string, data: Doc, key = a.apiKey) => h.call('PUT', `${aBase}/collections/${collection}/records/${id}`, { key, body: data });
    const deleteRecord = (collection: string, id: string) => h.call('DELETE', `${aBase}/collections/${collection}/records/${id}`, { key: a.apiKey });
    const putFile = (path: string, bytes: string | Buffer) =>
      h.call('PUT', `${aBase}/files/${path}`, { key: a.apiKey, rawBody: bytes, headers: { 'content-type': 'application/octet-stream' } });
    const deleteFile = (path: string) => h.call('DELETE', `${aBase}/files/${path}`, { key: a.apiKey });
    const readRecord = async (address: string, key = a.apiKey): Promise<Doc | null> => {
      const res = await h.call('GET', `${aBase}/collections/${address}`, { key });
      if (res.status === 404) return null;
      assert.equal(res.status, 200, res.text);
      return res.json.data as Doc;
    };
    const readFile = async (path: string): Promise<Buffer | null> => {
      const res = await h.call('GET', `${aBase}/files/${path}`, { key: a.apiKey });
      if (res.status === 404) return null;
      assert.equal(res.status, 200, res.text);
      return res.bytes;
    };
    const restoreEvents = async () =>
      h.core.db.reader.selectFrom('audit_events').select('seq').where('tenant_id', '=', a.tenantId).where('action', '=', 'tenant.restore').execute();

    before(async () => {
      h = await startHarness(driver, {
        env: {
          ...idp.env(),
          STRONGROOM_OPERATORS__IDENTITIES: JSON.stringify([
            { issuer: idp.issuer, subject: 'sre-1', roles: ['sre'] },
            { issuer: idp.issuer, subject: 'sup-1', roles: ['support'] },
          ]),
        },
      });
      a = await h.tenant('restored');
      b = await h.tenant('bystander');
      aBase = `/v1/tenants/${a.tenantId}`;

      // Tenant A's history up to S: several collections, updates, deletes, an overwritten file, a deleted file.
      await ok(h.call('PUT', `${aBase}/collections/people`, { key: a.apiKey, body: { indexes: [{ field: 'email' }] } }), 201);
      await ok(h.call('PUT', `${aBase}/collections/notes`, { key: a.apiKey, body: { indexes: [] } }), 201);
      for (let i = 0; i < 5; i++) await ok(putRecord('people', `p${i}`, { email: `p${i}@a.example`, n: i }), 201);
      for (let i = 0; i < 3; i++) await ok(putRecord('notes', `n${i}`, { text: `note ${i} ✓`, tags: ['x', i] }), 201);
      await ok(putRecord('people', 'p1', { email: 'p1-new@a.example', n: 10 }), 200);
      await ok(putRecord('people', 'p2', { email: 'p2@a.example', n: 20, nested: { deep: [1, 2] } }), 200);
      await ok(deleteRecord('people', 'p3'), 204);
      await ok(deleteRecord('notes', 'n1'), 204);
      await ok(putFile('docs/a.txt', 'alpha, first version'), 201);
      await ok(putFile('docs/a.txt', 'alpha, second version'), 201);
      await ok(putFile('docs/deep/b.bin', randomBytes(3000)), 201);
      await ok(putFile('old/gone.txt', 'deleted before S'), 201);
      await ok(deleteFile('old/gone.txt'), 204);
      const created = await h.call('POST', `${aBase}/api-keys`, { key: a.apiKey, body: { scopes: ['write'] } });
      assert.equal(created.status, 201, created.text);
      revokedKey = created.json.apiKey;

      s = await waitShipped(h);
      digestAtS = await restoredDigest();
      for (const address of ['people/records/p0', 'people/records/p1', 'people/records/p2', 'people/records/p3', 'people/records/p4', 'notes/records/n0', 'notes/records/n1', 'notes/records/n2', 'extra/records/e0']) {
        recordsAtS.set(address, await readRecord(address));
      }
      for (const path of ['docs/a.txt', 'docs/deep/b.bin', 'old/gone.txt', 'evil.txt']) filesAtS.set(path, await readFile(path));
      assert.equal(recordsAtS.get('people/records/p3'), null, 'a record deleted before S');
      assert.equal(filesAtS.get('docs/a.txt')?.toString(), 'alpha, second version');

      // The break: overwritten, deleted and new records and files; a key revoked, another created, a member invited.
      await ok(putRecord('people', 'p0', { email: 'pwned@evil.example', n: -1 }), 200);
      await ok(deleteRecord('people', 'p1'), 204);
      await ok(putRecord('people', 'p3', { email: 'back@evil.example' }), 200);
      await ok(deleteRecord('notes', 'n0'), 204);
      await ok(h.call('PUT', `${aBase}/collections/extra`, { key: a.apiKey, body: { indexes: [] } }), 201);
      await ok(putRecord('extra', 'e0', { text: 'not there at S' }), 201);
      await ok(putFile('docs/a.txt', 'encrypted by ransomware'), 201);
      await ok(deleteFile('docs/deep/b.bin'), 204);
      await ok(putFile('old/gone.txt', 'back again'), 201);
      await ok(putFile('evil.txt', 'evil'), 201);
      await ok(h.call('DELETE', `${aBase}/api-keys/${/^sr_([a-z2-7]{16})_/.exec(revokedKey)![1]}`, { key: a.apiKey }), 204);
      const kept = await h.call('POST', `${aBase}/api-keys`, { key: a.apiKey, body: { scopes: ['read'] } });
      assert.equal(kept.status, 201, kept.text);
      keptKey = kept.json.apiKey;
      await ok(h.call('POST', `${aBase}/members`, { key: a.apiKey, body: { email: 'new-member@a.example', role: 'viewer' } }), 201);
      brokenDigest = await restoredDigest();
      keysDigest = await keysAndMembers();
      assert.notEqual(brokenDigest, digestAtS);
      for (const collection of ['stream', 'load']) await ok(h.call('PUT', `/v1/tenants/${b.tenantId}/collections/${collection}`, { key: b.apiKey, body: { indexes: [] } }), 201);
    });
    after(() => h.close());

    test('only an sre operator may restore a tenant: a tenant API key and a support operator get 403, and nothing changes', async () => {
      const byKey = await h.call('POST', `/v1/ops/tenants/${a.tenantId}/restore`, { key: a.apiKey, body: { toSeq: s } });
      assert.equal(byKey.status, 403, byKey.text);
      const bySupport = await restore('sup-1', { toSeq: s });
      assert.equal(bySupport.status, 403, bySupport.text);
      assert.equal(bySupport.json.error.code, 'forbidden');
      assert.equal(await restoredDigest(), brokenDigest);
      assert.deepEqual(await restoreEvents(), []);
    });

    test('under a steady write load, each shipping call ends and hands the lease on, so a restore that ships never waits for the other tenants to pause', async () => {
      const bystander = startBystander(h, b, 'load');
      try {
        await waitFor(() => bystander.acknowledged.size >= WRITERS * 2, 'tenant B is writing');
        // The background shipper holds the lease while it ships; a call of ours takes it between two of its runs.
        const ours: { before: number; result: ShipResult }[] = [];
        await waitFor(async () => {
          const before = (await shippingStatus(h.core)).journalSeq;
          const result = await shipPending(h.core);
          if (!result.busy) ours.push({ before, result });
          return ours.length > 0;
        }, 'a shipping call takes the lease and ends while tenant B writes');
        assert.ok(ours[0]!.result.shippedSeq >= ours[0]!.before, 'it shipped what was journaled when it began');
      } finally {
        await bystander.stop();
      }
      assert.deepEqual(bystander.failures, []);
    });

    test('an sre restores tenant A to sequence S while tenant B keeps writing: A is exactly as at S, no write of B is lost, keys and members stay', async () => {
      const bystander = startBystander(h, b, 'stream');
      let restored: Response | undefined;
      try {
        await waitFor(() => bystander.acknowledged.size >= WRITERS * 2, 'tenant B is writing');
        bystander.during = true;
        restored = await restore('sre-1', { toSeq: s });
        bystander.during = false;
        const atRestore = bystander.acknowledged.size;
        await waitFor(() => bystander.acknowledged.size >= atRestore + WRITERS, 'tenant B goes on writing after the restore');
      } finally {
        await bystander.stop();
      }

      assert.ok(restored);
      assert.equal(restored.status, 200, restored.text);
      assert.equal(restored.json.tenantId, a.tenantId);
      assert.equal(restored.json.seq, s);
      assert.ok(restored.json.undoBookmark > s, `the undo bookmark ${restored.json.undoBookmark} is after S (${s})`);
      undoBookmark = restored.json.undoBookmark;
      assert.equal(await restoredDigest(), digestAtS, "A's records and files are exactly as at S");
      for (const [address, data] of recordsAtS) assert.deepEqual(await readRecord(address), data, address);
      for (const [path, bytes] of filesAtS) assert.deepEqual(await readFile(path), bytes, path);
      const versions = await h.call('GET', `${aBase}/file-versions/docs/a.txt`, { key: a.apiKey });
      assert.equal(versions.status, 200, versions.text);
      assert.deepEqual(versions.json.versions.map((v: { version: number }) => v.version), [2, 1], 'the overwritten file has its two versions of S');
      const first = await h.call('GET', `${aBase}/files/docs/a.txt?version=1`, { key: a.apiKey });
      assert.equal(first.text, 'alpha, first version');

      // Tenant B: every acknowledged write is there, as acknowledged, and some were acknowledged while the restore ran.
      assert.deepEqual(bystander.failures, [], 'no write of tenant B was refused');
      assert.ok(bystander.acknowledgedDuring > 0, 'tenant B wrote while the restore ran');
      const stored = new Map<string, { version: number; data: Doc }>();
      let cursor: string | null = null;
      do {
        const page = await h.call('GET', `/v1/tenants/${b.tenantId}/collections/stream/records?limit=500${cursor ? `&cursor=${cursor}` : ''}`, { key: b.apiKey });
        assert.equal(page.status, 200, page.text);
        for (const r of page.json.records as { id: string; version: number; data: Doc }[]) stored.set(r.id, { version: r.version, data: r.data });
        cursor = page.json.nextCursor;
      } while (cursor);
      assert.deepEqual(stored, bystander.acknowledged, "every acknowledged write of tenant B, and nothing else, is there after A's restore");

      // The audit log is never rewound: the restore is its newest history, and the chain verifies.
      const audit = await h.call('GET', `${aBase}/audit?limit=1000`, { key: a.apiKey });
      assert.equal(audit.status, 200, audit.text);
      const events = audit.json.events.filter((e: { action: string }) => e.action === 'tenant.restore');
      assert.equal(events.length, 1, audit.text);
      assert.equal(events[0].result, 'ok');
      assert.match(events[0].actor, /^operator:op_[a-z2-7]{16}$/, 'the operator who restored is named');
      assert.match(events[0].target, new RegExp(`restored to sequence ${s}\\b`));
      assert.ok(audit.json.events.some((e: { action: string }) => e.action === 'record.delete'), 'events from before the restore are kept');
      const chain = await verifyAuditChain(h.core.db.reader, a.tenantId);
      assert.ok(chain.ok, JSON.stringify(chain));

      // Members and API keys are as they were before the restore: the key revoked after S stays revoked.
      assert.equal(await keysAndMembers(), keysDigest);
      assert.deepEqual(await readRecord('people/records/p0', keptKey), recordsAtS.get('people/records/p0'), 'a key created after S still works');
      assert.equal((await h.call('GET', `${aBase}/collections/people/records/p0`, { key: revokedKey })).status, 401, 'a key revoked after S stays revoked');
      const members = await h.call('GET', `${aBase}/members`, { key: a.apiKey });
      assert.ok(members.json.members.some((m: { email: string }) => m.email === 'new-member@a.example'), members.text);
    });

    test('a sequence inside a shipped segment is a restore point, as an undo bookmark usually is', async () => {
      await waitShipped(h);
      const { timeline } = await shippingStatus(h.core);
      const segments = await listSegments(h.core, timeline);
      const inside = segments.find((segment, i) => i + 1 < segments.length && segments[i + 1]!.first - segment.first >= 2);
      assert.ok(inside, 'a segment holds several entries');
      const target = await emptyDatabase(driver);
      try {
        const restored = await restoreInto(h.core, target, { target: { seq: inside.first }, timeline, now: Date.now() });
        assert.equal(restored.seq, inside.first);
        const head = await target.writer.selectFrom('tenants').select('id').where('id', '=', a.tenantId).executeTakeFirst();
        assert.ok(head, 'the tenant is restored');
      } finally {
        await target.close();
      }
    });

    test('restoring to the undo bookmark brings back exactly the state the restore replaced', async () => {
      assert.ok(undoBookmark, 'the restore ran');
      const undone = await restore('sre-1', { toSeq: undoBookmark });
      assert.equal(undone.status, 200, undone.text);
      assert.equal(undone.json.seq, undoBookmark);
      assert.equal(await restoredDigest(), brokenDigest);
      assert.equal((await readFile('docs/a.txt'))?.toString(), 'encrypted by ransomware');
      assert.equal(await readFile('docs/deep/b.bin'), null);
      assert.equal((await readFile('evil.txt'))?.toString(), 'evil');
      assert.deepEqual(await readRecord('extra/records/e0'), { text: 'not there at S' });
      assert.equal((await restoreEvents()).length, 2);
      assert.equal(await keysAndMembers(), keysDigest);
      const chain = await verifyAuditChain(h.core.db.reader, a.tenantId);
      assert.ok(chain.ok, JSON.stringify(chain));
    });

    test('a target in the future or beyond the journal head is refused with 422 recovery_failed, and nothing changes', async () => {
      const before = { digest: await restoredDigest(), keys: await keysAndMembers(), events: (await restoreEvents()).length };
      const tomorrow = new Date(Date.now() + 24 * 3600_000).toISOString();
      const future = await restore('sre-1', { toTime: tomorrow });
      assert.equal(future.status, 422, future.text);
      assert.equal(future.json.error.code, 'recovery_failed');
      assert.match(future.json.error.message, /in the future/);
      const { journalSeq } = await shippingStatus(h.core);
      const beyond = await restore('sre-1', { toSeq: journalSeq + 1000 });
      assert.equal(beyond.status, 422, beyond.text);
      assert.equal(beyond.json.error.code, 'recovery_failed');
      assert.match(beyond.json.error.message, new RegExp(`sequence ${journalSeq + 1000} has not been written yet`));
      const both = await restore('sre-1', { toSeq: s, toTime: tomorrow });
      assert.equal(both.status, 400, both.text);
      assert.deepEqual({ digest: await restoredDigest(), keys: await keysAndMembers(), events: (await restoreEvents()).length }, before);
    });
  });
}
