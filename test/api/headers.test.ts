import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SECURITY_HEADERS } from '../../src/http/security-headers.js';
import { startHarness, type Harness, type Response } from '../support/strongroom.js';

let h: Harness;
let t: { tenantId: string; apiKey: string };
before(async () => {
  h = await startHarness('sqlite');
  t = await h.tenant();
});
after(() => h.close());

function assertSecurityHeaders(res: Response): void {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) assert.equal(res.headers[name], value, name);
  assert.match(String(res.headers['x-request-id']), /^[0-9a-f-]{36}$/);
}

test('a successful response carries HSTS, the other security headers and a request id', async () => {
  const res = await h.call('GET', `/v1/tenants/${t.tenantId}`, { key: t.apiKey });
  assert.equal(res.status, 200);
  assertSecurityHeaders(res);
});

test('errors carry them too, with the request id in the body', async () => {
  for (const res of [
    await h.call('GET', `/v1/tenants/${t.tenantId}`),
    await h.call('GET', '/no/such/route'),
    await h.call('GET', `/v1/tenants/${t.tenantId}/collections/c/records/%E0%A4%A`, { key: t.apiKey }),
  ]) {
    assert.ok(res.status >= 400 && res.status < 500, `${res.status}`);
    assertSecurityHeaders(res);
    assert.equal(res.json.error.requestId, res.headers['x-request-id']);
    assert.equal(typeof res.json.error.code, 'string');
  }
});

test('the OpenAPI 3.1 document lists the routes with their schemas', async () => {
  const res = await h.call('GET', '/v1/openapi.json');
  assert.equal(res.status, 200);
  assert.equal(res.json.openapi, '3.1.0');
  const put = res.json.paths['/v1/tenants/{tenantId}/collections/{collection}/records/{id}'].put;
  assert.ok(put.requestBody, 'the record body schema is documented');
  assert.ok(put.responses['412'], 'the precondition failure is documented');
});
