import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { apiKeyParts, SETUPS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

after(stopPostgres);

for (const { driver, kms } of SETUPS) {
  describe(`records API on ${driver} with the ${kms} KMS`, () => {
    let h: Harness;
    let t: { tenantId: string; apiKey: string };
    let base: string;
    /** Moves the server's clock, for expiry. */
    let clockOffset = 0;
    before(async () => {
      h = await startHarness(driver, { kms, now: () => Date.now() + clockOffset });
      t = await h.tenant('acme');
      base = `/v1/tenants/${t.tenantId}/collections`;
      const declared = await h.call('PUT', `${base}/people`, { key: t.apiKey, body: { indexes: [{ field: 'email' }, { field: 'age', expectedRows: 1000 }] } });
      assert.equal(declared.status, 201, declared.text);
    });
    after(() => h.close());

    test('a record is created with 201 and ETag "1", then read back as written', async () => {
      const put = await h.call('PUT', `${base}/people/records/alice`, { key: t.apiKey, body: { email: 'alice@example.com', age: 30, tags: ['a'] } });
      assert.equal(put.status, 201, put.text);
      assert.equal(put.headers.etag, '"1"');
      assert.equal(put.json.version, 1);
      const get = await h.call('GET', `${base}/people/records/alice`, { key: t.apiKey });
      assert.equal(get.status, 200);
      assert.equal(get.headers.etag, '"1"');
      assert.deepEqual(get.json.data, { email: 'alice@example.com', age: 30, tags: ['a'] });
      assert.equal(get.json.id, 'alice');
    });

    test('If-Match enforces optimistic concurrency', async () => {
      await h.call('PUT', `${base}/people/records/bob`, { key: t.apiKey, body: { email: 'bob@example.com' } });
      const ok = await h.call('PUT', `${base}/people/records/bob`, { key: t.apiKey, body: { email: 'bob@example.org' }, headers: { 'if-match': '"1"' } });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.headers.etag, '"2"');
      const stale = await h.call('PUT', `${base}/people/records/bob`, { key: t.apiKey, body: { email: 'x@example.org' }, headers: { 'if-match': '"1"' } });
      assert.equal(stale.status, 412);
      assert.equal(stale.json.error.code, 'precondition_failed');
      const exists = await h.call('PUT', `${base}/people/records/bob`, { key: t.apiKey, body: {}, headers: { 'if-none-match': '*' } });
      assert.equal(exists.status, 412);
      const bad = await h.call('PUT', `${base}/people/records/bob`, { key: t.apiKey, body: {}, headers: { 'if-match': 'W/"2"' } });
      assert.equal(bad.status, 400);
      const read = await h.call('GET', `${base}/people/records/bob`, { key: t.apiKey });
      assert.equal(read.json.data.email, 'bob@example.org');
    });

    test('a deleted record is gone but its history remains', async () => {
      await h.call('PUT', `${base}/people/records/carol`, { key: t.apiKey, body: { email: 'carol@example.com' } });
      await h.call('PUT', `${base}/people/records/carol`, { key: t.apiKey, body: { email: 'carol@example.net' } });
      const del = await h.call('DELETE', `${base}/people/records/carol`, { key: t.apiKey });
      assert.equal(del.status, 204);
      assert.equal((await h.call('GET', `${base}/people/records/carol`, { key: t.apiKey })).status, 404);
      assert.equal((await h.call('DELETE', `${base}/people/records/carol`, { key: t.apiKey })).status, 404);
      const versions = await h.call('GET', `${base}/people/records/carol/versions`, { key: t.apiKey });
      assert.equal(versions.status, 200);
      assert.deepEqual(
        versions.json.versions.map((v: { version: number; op: string; data: unknown }) => [v.version, v.op, v.data]),
        [
          [3, 'delete', null],
          [2, 'put', { email: 'carol@example.net' }],
          [1, 'put', { email: 'carol@example.com' }],
        ],
      );
      const again = await h.call('PUT', `${base}/people/records/carol`, { key: t.apiKey, body: { email: 'carol@example.com' } });
      assert.equal(again.json.version, 4);
    });

    test('equality queries on indexed fields return exactly the matching records', async () => {
      for (let i = 0; i < 30; i++) {
        const res = await h.call('PUT', `${base}/people/records/p${i}`, { key: t.apiKey, body: { email: `p${i % 3}@example.com`, age: i % 5 } });
        assert.equal(res.status, 201);
      }
      const byEmail = await h.call('GET', `${base}/people/records?where.email=p1@example.com`, { key: t.apiKey });
      assert.equal(byEmail.status, 200, byEmail.text);
      assert.deepEqual(
        byEmail.json.records.map((r: { id: string }) => r.id).sort(),
        Array.from({ length: 30 }, (_, i) => i).filter((i) => i % 3 === 1).map((i) => `p${i}`).sort(),
      );
      const both = await h.call('GET', `${base}/people/records?where.email=p1@example.com&where.age=4`, { key: t.apiKey });
      assert.deepEqual(both.json.records.map((r: { id: string }) => r.id).sort(), ['p19', 'p4'].sort());
      const none = await h.call('GET', `${base}/people/records?where.email=nobody@example.com`, { key: t.apiKey });
      assert.deepEqual(none.json.records, []);
      const unindexed = await h.call('GET', `${base}/people/records?where.tags=a`, { key: t.apiKey });
      assert.equal(unindexed.status, 400);
    });

    test('cursor pagination visits every live record once', async () => {
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const q: string = cursor ? `&cursor=${cursor}` : '';
        const page = await h.call('GET', `${base}/people/records?limit=7${q}`, { key: t.apiKey });
        assert.equal(page.status, 200, page.text);
        assert.ok(page.json.records.length <= 7);
        seen.push(...page.json.records.map((r: { id: string }) => r.id));
        cursor = page.json.nextCursor;
        pages += 1;
      } while (cursor && pages < 20);
      assert.equal(new Set(seen).size, seen.length);
      const live = ['alice', 'bob', 'carol', ...Array.from({ length: 30 }, (_, i) => `p${i}`)];
      assert.deepEqual([...seen].sort(), live.sort());
      assert.equal((await h.call('GET', `${base}/people/records?cursor=not-a-cursor`, { key: t.apiKey })).status, 400);
    });

    test('a read-only key reads but cannot write; a revoked key is refused', async () => {
      const created = await h.call('POST', `/v1/tenants/${t.tenantId}/api-keys`, { key: t.apiKey, body: { scopes: ['read'] } });
      assert.equal(created.status, 201, created.text);
      const ro = created.json.apiKey as string;
      assert.match(ro, /^sr_[a-z2-7]{16}_/);
      assert.equal((await h.call('GET', `${base}/people/records/alice`, { key: ro })).status, 200);
      const denied = await h.call('PUT', `${base}/people/records/alice`, { key: ro, body: {} });
      assert.equal(denied.status, 403);
      assert.equal(denied.json.error.code, 'forbidden');
      const list = await h.call('GET', `/v1/tenants/${t.tenantId}/api-keys`, { key: t.apiKey });
      assert.ok(list.json.apiKeys.some((k: { keyId: string }) => k.keyId === created.json.keyId));
      assert.ok(!list.text.includes(apiKeyParts(ro).secret), 'a listing never shows a secret');
      assert.equal((await h.call('DELETE', `/v1/tenants/${t.tenantId}/api-keys/${created.json.keyId}`, { key: t.apiKey })).status, 204);
      const revoked = await h.call('GET', `${base}/people/records/alice`, { key: ro });
      assert.equal(revoked.status, 401);
      assert.equal(revoked.headers['www-authenticate'], 'Bearer');
    });

    test('an expired key is refused', async () => {
      const inAMinute = new Date(Date.now() + 60_000).toISOString();
      const created = await h.call('POST', `/v1/tenants/${t.tenantId}/api-keys`, { key: t.apiKey, body: { scopes: ['read'], expiresAt: inAMinute } });
      assert.equal(created.status, 201, created.text);
      assert.equal((await h.call('GET', `/v1/tenants/${t.tenantId}`, { key: created.json.apiKey })).status, 200);
      clockOffset = 61_000;
      try {
        assert.equal((await h.call('GET', `/v1/tenants/${t.tenantId}`, { key: created.json.apiKey })).status, 401);
        assert.equal((await h.call('GET', `/v1/tenants/${t.tenantId}`, { key: t.apiKey })).status, 200, 'a key without expiry still works');
      } finally {
        clockOffset = 0;
      }
    });

    test('members are invited with a role and listed with their e-mail', async () => {
      const invited = await h.call('POST', `/v1/tenants/${t.tenantId}/members`, { key: t.apiKey, body: { email: 'Dana@Example.com', role: 'viewer' } });
      assert.equal(invited.status, 201, invited.text);
      const list = await h.call('GET', `/v1/tenants/${t.tenantId}/members`, { key: t.apiKey });
      assert.deepEqual(
        list.json.members.map((m: { email: string; role: string; status: string }) => [m.email, m.role, m.status]),
        [['dana@example.com', 'viewer', 'invited']],
      );
      assert.equal((await h.call('DELETE', `/v1/tenants/${t.tenantId}/members/${invited.json.memberId}`, { key: t.apiKey })).status, 204);
    });

    test('the audit log records writes and reads with readable targets', async () => {
      const res = await h.call('GET', `/v1/tenants/${t.tenantId}/audit?limit=500`, { key: t.apiKey });
      assert.equal(res.status, 200, res.text);
      const events = res.json.events as { seq: number; action: string; target: string; actor: string; result: string }[];
      assert.deepEqual(events.slice(0, 2).map((e) => e.action), ['tenant.create', 'api_key.create']);
      assert.ok(events.some((e) => e.action === 'record.put' && e.target === 'record:people/alice'));
      assert.ok(events.some((e) => e.action === 'record.get' && e.target === 'record:people/alice' && e.result === 'ok'));
      assert.ok(events.some((e) => e.action === 'record.put' && e.actor.startsWith('api-key:')));
      assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1));
      const keyUses = events.filter((e) => e.action === 'kms.unwrap');
      assert.deepEqual(keyUses.map((e) => e.target).sort(), ['data-key:1 purpose:data kek-version:1', 'data-key:2 purpose:index kek-version:1'], 'each KMS unwrap of a data key is audited once while cached');
      for (const use of keyUses) assert.match(use.actor, /^api-key:/, 'a key use names the caller whose request needed the key');
    });

    test('collection indexes cannot change once it holds records', async () => {
      const res = await h.call('PUT', `${base}/people`, { key: t.apiKey, body: { indexes: [{ field: 'email' }] } });
      assert.equal(res.status, 409);
      const same = await h.call('PUT', `${base}/people`, { key: t.apiKey, body: { indexes: [{ field: 'email' }, { field: 'age', expectedRows: 1000 }] } });
      assert.equal(same.status, 200, same.text);
      const leaky = await h.call('PUT', `${base}/leaky`, { key: t.apiKey, body: { indexes: [{ field: 'email', bits: 32, expectedRows: 1000 }] } });
      assert.equal(leaky.status, 400);
      assert.match(leaky.json.error.message, /bits/);
    });
  });
}
