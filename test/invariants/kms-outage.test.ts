// The KMS goes away (the PKCS#11 token is unplugged): requests that need a key not in the cache get
// 503 with the error code and write nothing, cached keys keep serving, and service comes back by
// itself when the token does.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { databaseFiles, marker, scanFiles } from '../support/disk-scan.js';
import { startHarness, type Harness } from '../support/strongroom.js';
import { tenantRowCounts } from '../support/tenant-rows.js';

let h: Harness;
let cached: { tenantId: string; apiKey: string };
let cold: { tenantId: string; apiKey: string };
const record = (t: { tenantId: string }, id: string) => `/v1/tenants/${t.tenantId}/collections/notes/records/${id}`;

before(async () => {
  h = await startHarness('sqlite', { kms: 'pkcs11' });
  cached = await h.tenant('cached');
  cold = await h.tenant('cold');
  for (const t of [cached, cold]) {
    assert.equal((await h.call('PUT', `/v1/tenants/${t.tenantId}/collections/notes`, { key: t.apiKey, body: { indexes: [] } })).status, 201);
    assert.equal((await h.call('PUT', record(t, 'n1'), { key: t.apiKey, body: { text: 'before the outage' } })).status, 201);
  }
});
after(() => h.close());

test('while the token is gone: uncached keys give 503 unavailable and nothing is written; cached ones keep serving; then it recovers', async () => {
  h.core.keyring.evictTenant(cold.tenantId);
  const rowsBefore = await tenantRowCounts(h, cold.tenantId);
  const secret = marker('outage');
  await h.kmsToken!.unplug();
  try {
    for (const [method, body] of [['GET', undefined], ['PUT', { text: secret }]] as const) {
      const res = await h.call(method, record(cold, 'n1'), { key: cold.apiKey, ...(body ? { body } : {}) });
      assert.equal(res.status, 503, `${method}: ${res.text}`);
      assert.equal(res.json.error.code, 'unavailable');
      assert.match(res.json.error.message, /retry later/);
    }
    assert.deepEqual(await tenantRowCounts(h, cold.tenantId), rowsBefore, 'the refused write left no row, not even an audit event');
    const served = await h.call('GET', record(cached, 'n1'), { key: cached.apiKey });
    assert.equal(served.status, 200, 'a tenant whose keys are cached is not affected');
    assert.equal((await h.call('PUT', record(cached, 'n2'), { key: cached.apiKey, body: { text: 'during the outage' } })).status, 201);
  } finally {
    await h.kmsToken!.plugIn();
  }
  assert.equal(scanFiles(await databaseFiles(h), [secret]).found.size, 0, 'no plaintext of the refused write at rest');
  // The provider looks for the token again at most once a second.
  let recovered = await h.call('GET', record(cold, 'n1'), { key: cold.apiKey });
  for (let tries = 0; recovered.status === 503 && tries < 50; tries += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    recovered = await h.call('GET', record(cold, 'n1'), { key: cold.apiKey });
  }
  assert.equal(recovered.status, 200, recovered.text);
  assert.deepEqual(recovered.json.data, { text: 'before the outage' });
  assert.equal((await h.call('PUT', record(cold, 'n2'), { key: cold.apiKey, body: { text: 'after' } })).status, 201);
});
