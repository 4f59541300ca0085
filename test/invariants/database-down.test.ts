import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

let h: Harness;
let t: { tenantId: string; apiKey: string };
let base: string;
before(async () => {
  h = await startHarness('postgres');
  t = await h.tenant();
  base = `/v1/tenants/${t.tenantId}/collections/notes`;
  assert.equal((await h.call('PUT', base, { key: t.apiKey, body: { indexes: [] } })).status, 201);
  assert.equal((await h.call('PUT', `${base}/records/before`, { key: t.apiKey, body: { n: 1 } })).status, 201);
  await stopPostgres();
});
after(() => h.close().catch(() => undefined));

test('with the database gone, writes and reads get 503 with the JSON error shape, never a 2xx', async () => {
  for (const [method, path, body] of [
    ['PUT', `${base}/records/after`, { n: 2 }],
    ['GET', `${base}/records/before`, undefined],
    ['GET', `${base}/records`, undefined],
  ] as const) {
    const res = await h.call(method, path, { key: t.apiKey, ...(body ? { body } : {}) });
    assert.equal(res.status, 503, `${method} ${path}: ${res.text}`);
    assert.equal(res.json.error.code, 'unavailable');
    assert.equal(res.json.error.requestId, res.headers['x-request-id']);
    assert.ok(!res.text.includes('"n"'), 'no record data');
  }
});

test('the server itself stays up', async () => {
  assert.equal((await h.call('GET', '/healthz')).status, 200);
});
