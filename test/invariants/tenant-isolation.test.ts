// Invariant 4: no tenant sees another's data, whatever the route, id or role. Every route of the
// OpenAPI document is called with tenant B's keys (admin, write, read) on tenant A's paths, filled
// with the real ids of A's objects: each answer is 404 or 403 and carries nothing of A's. Then A's
// data is checked unchanged, and not one row was added to A's tenant but its record of the calls
// made with no credential (auth.failed audit events).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { requestAccess } from '../../src/core/access-requests.js';
import { buildPendingExports } from '../../src/core/lifecycle/exports.js';
import type { Principal } from '../../src/core/context.js';
import { marker } from '../support/disk-scan.js';
import { DRIVERS, startHarness, stopPostgres, type Harness, type Response } from '../support/strongroom.js';
import { tenantRowCounts, type TenantRowCounts } from '../support/tenant-rows.js';

after(stopPostgres);

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const;

/** Routes this release is known to have: the enumeration must find at least these. */
const KNOWN_ROUTES = [
  'GET /v1/tenants/{tenantId}',
  'POST /v1/tenants/{tenantId}/api-keys',
  'GET /v1/tenants/{tenantId}/api-keys',
  'DELETE /v1/tenants/{tenantId}/api-keys/{keyId}',
  'POST /v1/tenants/{tenantId}/members',
  'GET /v1/tenants/{tenantId}/members',
  'DELETE /v1/tenants/{tenantId}/members/{memberId}',
  'PUT /v1/tenants/{tenantId}/collections/{collection}',
  'PUT /v1/tenants/{tenantId}/collections/{collection}/records/{id}',
  'GET /v1/tenants/{tenantId}/collections/{collection}/records/{id}',
  'DELETE /v1/tenants/{tenantId}/collections/{collection}/records/{id}',
  'GET /v1/tenants/{tenantId}/collections/{collection}/records/{id}/versions',
  'GET /v1/tenants/{tenantId}/collections/{collection}/records',
  'GET /v1/tenants/{tenantId}/audit',
  'POST /v1/tenants/{tenantId}/access-requests',
  'GET /v1/tenants/{tenantId}/access-requests',
  'POST /v1/tenants/{tenantId}/access-requests/{requestId}/approve',
  'POST /v1/tenants/{tenantId}/access-requests/{requestId}/deny',
  'POST /v1/tenants/{tenantId}/access-requests/{requestId}/break-glass',
  'POST /v1/tenants/{tenantId}/access-requests/{requestId}/revoke',
  'PUT /v1/tenants/{tenantId}/files/{*}',
  'GET /v1/tenants/{tenantId}/files/{*}',
  'DELETE /v1/tenants/{tenantId}/files/{*}',
  'GET /v1/tenants/{tenantId}/files',
  'GET /v1/tenants/{tenantId}/file-versions/{*}',
  'POST /v1/tenants/{tenantId}/file-versions/{*}',
  'POST /v1/tenants/{tenantId}/signed-urls/{*}',
  'GET /v1/signed/{token}',
  'GET /v1/ops/tenants',
  'GET /v1/ops/storage',
  'POST /v1/tenants/{tenantId}/webhooks',
  'GET /v1/tenants/{tenantId}/webhooks',
  'DELETE /v1/tenants/{tenantId}/webhooks/{webhookId}',
  'POST /v1/tenants/{tenantId}/webhooks/{webhookId}/test',
  'POST /v1/tenants/{tenantId}/exports',
  'GET /v1/tenants/{tenantId}/exports/{exportId}',
  'GET /v1/signed/exports/{token}',
];

/**
 * A valid body for each write route, so a request cannot stop at validation (400) before it
 * reaches authorization. A new write route needs an entry here.
 */
const BODIES: Record<string, unknown> = {
  'PATCH /v1/tenants/{tenantId}': { requireMfa: true },
  'POST /v1/tenants/{tenantId}/api-keys': { scopes: ['admin'] },
  'POST /v1/tenants/{tenantId}/members': { email: 'intruder@example.com', role: 'owner' },
  'PUT /v1/tenants/{tenantId}/collections/{collection}': { indexes: [] },
  'PUT /v1/tenants/{tenantId}/collections/{collection}/records/{id}': { overwrittenBy: 'tenant B' },
  'POST /v1/tenants/{tenantId}/access-requests': { reason: 'tenant B asks', ticket: 'B-1', scope: 'read', durationMinutes: 60 },
  'PUT /v1/tenants/{tenantId}/files/{*}': { overwrittenBy: 'tenant B' },
  'POST /v1/tenants/{tenantId}/file-versions/{*}': {},
  'POST /v1/tenants/{tenantId}/signed-urls/{*}': {},
  'POST /v1/tenants/{tenantId}/webhooks': { url: 'https://intruder.example/hook', events: ['access.breakglass'] },
  'POST /v1/ops/webhooks': { url: 'https://intruder.example/hook', events: ['access.breakglass'] },
  'POST /v1/ops/tenants/{tenantId}/restore': { toSeq: 0 },
  'POST /v1/tenants/{tenantId}/termination': { confirm: 'tenant B terminates A' },
  'POST /v1/tenants/{tenantId}/exports': { includeVersions: true },
};

interface TenantFixture {
  tenantId: string;
  name: string;
  apiKey: string;
  collection: string;
  /** A record id only this tenant uses, and one both tenants use in their same-named collections. */
  recordId: string;
  sharedId: string;
  body: Record<string, unknown>;
  sharedBody: Record<string, unknown>;
  keyId: string;
  memberId: string;
  memberEmail: string;
  /** An operator's request for access, whose reason only A's admins may read. */
  requestId: string;
  requestReason: string;
  filePath: string;
  fileBody: string;
  /** A signed URL of A's file whose MAC was made up: the token route must refuse it to anyone. */
  forgedToken: string;
  webhookId: string;
  /** A built export, and a download URL for it whose MAC was made up. */
  exportId: string;
  forgedExportToken: string;
}

interface Operation {
  method: string;
  template: string;
}

async function setUpTenant(h: Harness, label: string, collection: string, sharedId: string): Promise<TenantFixture> {
  const name = `isolation ${label}`;
  const t = await h.tenant(name);
  const base = `/v1/tenants/${t.tenantId}`;
  const ok = (res: Response, status: number) => assert.equal(res.status, status, res.text);
  ok(await h.call('PUT', `${base}/collections/${collection}`, { key: t.apiKey, body: { indexes: [{ field: 'email' }] } }), 201);
  const recordId = marker(`${label}-id`);
  const body = { email: `${marker(`${label}-email`)}@example.com`, secret: marker(`${label}-body`), list: [marker(`${label}-nested`)] };
  ok(await h.call('PUT', `${base}/collections/${collection}/records/${recordId}`, { key: t.apiKey, body }), 201);
  const sharedBody = { email: 'same@example.com', owner: marker(`${label}-shared`) };
  ok(await h.call('PUT', `${base}/collections/${collection}/records/${sharedId}`, { key: t.apiKey, body: sharedBody }), 201);
  const key = await h.call('POST', `${base}/api-keys`, { key: t.apiKey, body: { scopes: ['read'] } });
  ok(key, 201);
  const memberEmail = `${marker(`${label}-member`)}@example.com`;
  const member = await h.call('POST', `${base}/members`, { key: t.apiKey, body: { email: memberEmail, role: 'owner' } });
  ok(member, 201);
  const operator: Principal = { kind: 'operator', operatorId: 'op_isolationtests', roles: ['support'], grant: null };
  const requestReason = marker(`${label}-reason`);
  const access = await requestAccess(h.core, operator, { requestId: 'test', sourceIp: 'local' }, t.tenantId, {
    reason: requestReason,
    ticket: 'T-1',
    scope: 'read',
    durationMinutes: 30,
    breakGlass: false,
  });
  const filePath = `docs/${marker(`${label}-file`)}.txt`;
  const fileBody = marker(`${label}-file-body`);
  ok(await h.call('PUT', `${base}/files/${filePath}`, { key: t.apiKey, rawBody: fileBody, headers: { 'content-type': 'text/plain' } }), 201);
  const signed = await h.call('POST', `${base}/signed-urls/${filePath}`, { key: t.apiKey, body: {} });
  ok(signed, 201);
  const token = new URL(signed.json.url as string).pathname.split('/').pop()!;
  const forgedToken = `${token.slice(0, token.lastIndexOf('.'))}.${'A'.repeat(43)}`;
  const webhook = await h.call('POST', `${base}/webhooks`, { key: t.apiKey, body: { url: `https://${label}.hooks.example/in`, events: ['access.breakglass'] } });
  ok(webhook, 201);
  const asked = await h.call('POST', `${base}/exports`, { key: t.apiKey, body: { includeVersions: true } });
  ok(asked, 202);
  // Built before the tests count A's rows (by this call, or by the server's job if it took it first).
  await buildPendingExports(h.core);
  let exported = await h.call('GET', `${base}/exports/${asked.json.exportId}`, { key: t.apiKey });
  while (exported.json.status === 'building') {
    await new Promise((resolve) => setTimeout(resolve, 50));
    exported = await h.call('GET', `${base}/exports/${asked.json.exportId}`, { key: t.apiKey });
  }
  assert.equal(exported.json.status, 'ready', exported.text);
  const exportToken = new URL(exported.json.download.url as string).pathname.split('/').pop()!;
  return {
    exportId: asked.json.exportId,
    forgedExportToken: `${exportToken.slice(0, exportToken.lastIndexOf('.'))}.${'A'.repeat(43)}`,
    webhookId: webhook.json.webhookId,
    filePath,
    fileBody,
    forgedToken,
    tenantId: t.tenantId,
    name,
    apiKey: t.apiKey,
    collection,
    recordId,
    sharedId,
    body,
    sharedBody,
    keyId: key.json.keyId,
    memberId: member.json.memberId,
    memberEmail,
    requestId: access.requestId,
    requestReason,
  };
}

/** Tenant A's data as its own admin sees it, through the API. */
async function snapshot(h: Harness, a: TenantFixture) {
  const base = `/v1/tenants/${a.tenantId}`;
  const rec = `${base}/collections/${a.collection}/records`;
  const get = async (path: string) => {
    const res = await h.call('GET', path, { key: a.apiKey });
    assert.equal(res.status, 200, `${path}: ${res.text}`);
    return res.json;
  };
  return {
    tenant: await get(base),
    record: await get(`${rec}/${a.recordId}`),
    shared: await get(`${rec}/${a.sharedId}`),
    versions: await get(`${rec}/${a.recordId}/versions`),
    list: await get(`${rec}?limit=100`),
    byEmail: await get(`${rec}?where.email=${encodeURIComponent(a.body.email as string)}`),
    apiKeys: await get(`${base}/api-keys`),
    members: await get(`${base}/members`),
    file: (await h.call('GET', `${base}/files/${a.filePath}`, { key: a.apiKey })).text,
    fileVersions: await get(`${base}/file-versions/${a.filePath}`),
  };
}

for (const driver of DRIVERS) {
  describe(`tenant isolation on ${driver}`, () => {
    let h: Harness;
    let a: TenantFixture;
    let b: TenantFixture;
    let bKeys: Record<'admin' | 'write' | 'read', string>;
    let operations: Operation[];
    let aRowsBefore: TenantRowCounts;
    let aBefore: Awaited<ReturnType<typeof snapshot>>;

    before(async () => {
      h = await startHarness(driver);
      // B uses the same collection name and one same record id as A: names are per tenant, never shared.
      const collection = `shared-${marker('c').slice(-8)}`;
      const sharedId = marker('shared-id');
      a = await setUpTenant(h, 'alpha', collection, sharedId);
      b = await setUpTenant(h, 'bravo', collection, sharedId);
      const bKey = async (scopes: string[]) => {
        const res = await h.call('POST', `/v1/tenants/${b.tenantId}/api-keys`, { key: b.apiKey, body: { scopes } });
        assert.equal(res.status, 201, res.text);
        return res.json.apiKey as string;
      };
      bKeys = { admin: b.apiKey, write: await bKey(['write']), read: await bKey(['read']) };

      const doc = await h.call('GET', '/v1/openapi.json');
      assert.equal(doc.status, 200, doc.text);
      operations = Object.entries(doc.json.paths as Record<string, Record<string, unknown>>)
        // The keys that verify deletion certificates are public and belong to no tenant.
        .filter(([template]) => template !== '/v1/deletion-certificates/keys')
        .flatMap(([template, item]) => METHODS.filter((m) => item[m] !== undefined).map((m) => ({ method: m.toUpperCase(), template })));
      // The OpenAPI document leaves HEAD routes out.
      operations.push({ method: 'HEAD', template: '/v1/tenants/{tenantId}/files/{*}' });
      aBefore = await snapshot(h, a);
      aRowsBefore = await tenantRowCounts(h, a.tenantId);
    });
    after(() => h.close());

    test('the OpenAPI enumeration finds every route known to exist', () => {
      const found = operations.map((o) => `${o.method} ${o.template}`);
      for (const route of KNOWN_ROUTES) assert.ok(found.includes(route), `${route} is in the OpenAPI document (found: ${found.join(', ')})`);
    });

    /** A's values that must never reach B. */
    const secretsOfA = () => [
      a.tenantId,
      a.name,
      a.keyId,
      a.memberId,
      a.recordId,
      a.sharedBody.owner as string,
      a.memberEmail,
      a.requestId,
      a.requestReason,
      a.body.email as string,
      a.body.secret as string,
      (a.body.list as string[])[0]!,
      a.filePath,
      a.fileBody,
      a.exportId,
    ];

    /** A's path for a route template, filled with the real ids of A's objects. */
    const pathOfA = (template: string, recordId = a.recordId): string =>
      template.replace(/\{([^}]+)\}/g, (_, name: string) => {
        const values: Record<string, string> = {
          tenantId: a.tenantId,
          collection: a.collection,
          id: recordId,
          keyId: a.keyId,
          memberId: a.memberId,
          requestId: a.requestId,
          '*': a.filePath,
          webhookId: a.webhookId,
          deliveryId: 'd_aaaaaaaaaaaaaaaa',
          exportId: a.exportId,
          token: template.startsWith('/v1/signed/exports/') ? a.forgedExportToken : a.forgedToken,
        };
        const value = values[name];
        assert.ok(value !== undefined, `no value of tenant A for the path parameter {${name}} of ${template}: teach this test`);
        return name === '*' ? value : encodeURIComponent(value);
      });

    for (const role of ['admin', 'write', 'read'] as const) {
      test(`tenant B's ${role} key gets 404 or 403, and nothing of A's, on every route of tenant A`, async () => {
        assert.ok(operations.length >= KNOWN_ROUTES.length);
        for (const { method, template } of operations) {
          const route = `${method} ${template}`;
          const paths = [pathOfA(template)];
          if (template.includes('{id}')) paths.push(pathOfA(template, a.sharedId));
          if (template.endsWith('/records')) paths.push(`${paths[0]}?where.email=${encodeURIComponent(a.body.email as string)}`, `${paths[0]}?limit=500`);
          if (template.endsWith('/audit')) paths.push(`${paths[0]}?limit=500`);
          for (const path of paths) {
            const res = await h.call(method, path, { key: bKeys[role], body: BODIES[route] });
            assert.ok([403, 404].includes(res.status), `${route} (${path}) with B's ${role} key: ${res.status} ${res.text}`);
            if (method !== 'HEAD') assert.equal(typeof res.json?.error?.code, 'string', `${route}: the JSON error shape`);
            assert.equal(res.headers.etag, undefined, `${route}: no ETag of A's record`);
            const leaked = secretsOfA().filter((s) => res.text.includes(s) || JSON.stringify(res.headers).includes(s));
            assert.deepEqual(leaked, [], `${route} (${path}) answered B with A's data`);
          }
        }
      });
    }

    test('without a credential every route of tenant A answers 401 with nothing of A', async () => {
      for (const { method, template } of operations) {
        const res = await h.call(method, pathOfA(template), { body: BODIES[`${method} ${template}`] });
        // The signed routes take no credential: a forged token is refused as forbidden.
        assert.equal(res.status, template.startsWith('/v1/signed/') ? 403 : 401, `${method} ${template}: ${res.text}`);
        assert.deepEqual(secretsOfA().filter((s) => res.text.includes(s)), []);
      }
    });

    test("under its own tenant, B's same collection name and record id hold B's record, not A's", async () => {
      const res = await h.call('GET', `/v1/tenants/${b.tenantId}/collections/${b.collection}/records/${b.sharedId}`, { key: b.apiKey });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json.data, b.sharedBody);
      const byAEmail = await h.call('GET', `/v1/tenants/${b.tenantId}/collections/${b.collection}/records?where.email=${encodeURIComponent(a.body.email as string)}`, { key: b.apiKey });
      assert.equal(byAEmail.status, 200, byAEmail.text);
      assert.deepEqual(byAEmail.json.records, [], "a query for A's indexed value finds nothing in B's collection");
      const members = await h.call('GET', `/v1/tenants/${b.tenantId}/members`, { key: b.apiKey });
      assert.deepEqual(secretsOfA().filter((s) => members.text.includes(s)), []);
      const audit = await h.call('GET', `/v1/tenants/${b.tenantId}/audit?limit=1000`, { key: b.apiKey });
      assert.equal(audit.status, 200);
      assert.deepEqual(secretsOfA().filter((s) => audit.text.includes(s)), [], "B's audit log holds nothing of A's");
      // Last: B's own lookup of A's id is audited in B's log, with the id B asked for.
      const aOnly = await h.call('GET', `/v1/tenants/${b.tenantId}/collections/${b.collection}/records/${a.recordId}`, { key: b.apiKey });
      assert.equal(aOnly.status, 404, "A's record id names nothing in B's collection");
    });

    test("after all of B's attempts, A's data is unchanged and not one row was added to A's tenant", async () => {
      // Counted first: reading A's data through the API appends A's own audit events. The only rows
      // B's attempts may add are A's record of the calls made with no credential at all.
      const failed = await h.core.db.reader
        .selectFrom('audit_events')
        .select(['actor', 'target'])
        .where('tenant_id', '=', a.tenantId)
        .where('action', '=', 'auth.failed')
        .execute();
      assert.ok(failed.every((e) => e.actor === 'system:unauthenticated' && e.target.subarray(1).toString().startsWith('none ')), 'only credential-less calls failed');
      const counts = await tenantRowCounts(h, a.tenantId);
      assert.deepEqual({ ...counts, audit_events: counts.audit_events - failed.length }, aRowsBefore, "rows of A's tenant, by table");
      const verification = await verifyAuditChain(h.core.db.reader, a.tenantId);
      assert.ok(verification.ok, `A's audit chain verifies: ${JSON.stringify(verification)}`);
      const aAfter = await snapshot(h, a);
      assert.deepEqual(aAfter, aBefore);
      assert.deepEqual(aAfter.record.data, a.body);
      assert.deepEqual(aAfter.shared.data, a.sharedBody);
      assert.ok(aAfter.apiKeys.apiKeys.every((k: { revokedAt: string | null }) => k.revokedAt === null), "none of A's keys was revoked");
      assert.ok(aAfter.members.members.some((m: { memberId: string }) => m.memberId === a.memberId), "A's member is still there");
    });
  });
}
