// Invariant 9: bad input gets a 4xx with the JSON error shape {"error":{"code","message","requestId"}},
// never a 5xx or a crash, and nothing is half-written: after every refused write the tenant's rows
// (records, versions, index entries, change log, audit events, collections, keys, members) are
// exactly as before. Hand-written cases first, then fast-check properties over hostile ids, bodies,
// query strings and headers for the record routes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { Agent } from 'undici';
import { collectionKeys } from '../../src/core/tenant-keys.js';
import { recordKeyFor } from '../../src/crypto/record-key.js';
import { DRIVERS, readResponse, startHarness, stopPostgres, type CallOptions, type Harness, type Response } from '../support/strongroom.js';
import { tenantRowCounts } from '../support/tenant-rows.js';

after(stopPostgres);

const COLLECTION = 'people';
const TARGET = 'target';
const TARGET_DATA = { email: 'target@example.com', n: 1, nested: { list: [1, 'two', null] } };
const JSON_TYPE = { 'content-type': 'application/json' };

/** A 4xx with exactly the documented error shape, and the request id of the response header. */
function assertErrorShape(res: Response, context: string): void {
  assert.ok(res.status >= 400 && res.status < 500, `${context}: expected a 4xx, got ${res.status} ${res.text.slice(0, 300)}`);
  const error = res.json?.error;
  assert.ok(error !== null && typeof error === 'object', `${context}: expected {"error":{"code","message","requestId"}}, got ${res.text.slice(0, 300)}`);
  assert.match(String(error.code), /^[a-z_]+$/, `${context}: error.code`);
  assert.ok(typeof error.message === 'string' && error.message.length > 0, `${context}: error.message`);
  assert.equal(typeof error.requestId, 'string', `${context}: error.requestId`);
  assert.equal(error.requestId, res.headers['x-request-id'], `${context}: error.requestId is the x-request-id header`);
}

/** Percent-encodes every byte of the UTF-8 form except the unreserved characters. */
function encodeComponent(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const char = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const isOk = (status: number) => status >= 200 && status < 300;

/** Deep equality of two JSON values without recursion, so deeply nested documents compare too. */
function sameJson(a: unknown, b: unknown): boolean {
  const pending: [unknown, unknown][] = [[a, b]];
  while (pending.length > 0) {
    const [x, y] = pending.pop()!;
    if (x === y) continue;
    if (typeof x !== 'object' || typeof y !== 'object' || x === null || y === null) return false;
    if (Array.isArray(x) !== Array.isArray(y)) return false;
    const xs = x as Record<string, unknown>;
    const ys = y as Record<string, unknown>;
    const keys = Object.keys(xs);
    if (keys.length !== Object.keys(ys).length) return false;
    for (const k of keys) {
      if (!Object.prototype.hasOwnProperty.call(ys, k)) return false;
      pending.push([xs[k], ys[k]]);
    }
  }
  return true;
}

const preview = (value: unknown) => {
  try {
    return JSON.stringify(value).slice(0, 200);
  } catch {
    return '(too deep to print)';
  }
};

for (const driver of DRIVERS) {
  describe(`bad input on ${driver}`, () => {
    let h: Harness;
    let tenantId: string;
    let key: string;
    let base: string;
    let records: string;
    let targetKey: Buffer;
    let raw: Agent;

    before(async () => {
      h = await startHarness(driver);
      ({ tenantId, apiKey: key } = await h.tenant('bad-input'));
      base = `/v1/tenants/${tenantId}`;
      records = `${base}/collections/${COLLECTION}/records`;
      const declared = await h.call('PUT', `${base}/collections/${COLLECTION}`, { key, body: { indexes: [{ field: 'email' }, { field: 'n', expectedRows: 1000 }] } });
      assert.equal(declared.status, 201, declared.text);
      const put = await h.call('PUT', `${records}/${TARGET}`, { key, body: TARGET_DATA });
      assert.equal(put.status, 201, put.text);
      targetKey = recordKeyFor((await collectionKeys(h.core, tenantId, COLLECTION, { kind: 'system', name: 'test' })).idKey, TARGET);
      raw = new Agent({ connect: { ca: h.ca, servername: 'localhost' } });
    });
    after(async () => {
      await raw.close();
      await h.close();
    });

    /** Everything a refused write must leave as it was. */
    async function stored() {
      const reader = h.core.db.reader;
      const target = await reader
        .selectFrom('records')
        .select(['version', 'body', 'deleted'])
        .where('tenant_id', '=', tenantId)
        .where('collection', '=', COLLECTION)
        .where('record_key', '=', targetKey)
        .executeTakeFirstOrThrow();
      const versions = await reader
        .selectFrom('records')
        .select((eb) => eb.fn.sum<number | string>('version').as('sum'))
        .where('tenant_id', '=', tenantId)
        .executeTakeFirstOrThrow();
      const collections = await reader.selectFrom('collections').select(['name', 'spec']).where('tenant_id', '=', tenantId).orderBy('name').execute();
      const keys = await reader.selectFrom('api_keys').select(['key_id', 'revoked_at']).where('tenant_id', '=', tenantId).orderBy('key_id').execute();
      return {
        rows: await tenantRowCounts(h, tenantId),
        versionSum: Number(versions.sum),
        target: { version: Number(target.version), deleted: Number(target.deleted), body: target.body.toString('base64') },
        collections,
        keys: keys.map((k) => [k.key_id, k.revoked_at === null ? null : Number(k.revoked_at)]),
      };
    }

    interface BadWrite {
      label: string;
      method: string;
      path: string;
      options?: CallOptions;
      /** The exact status expected; any 4xx when absent. */
      status?: number;
      code?: string;
    }

    /** Sends each bad write; collects every deviation (a 5xx, a wrong shape, a write) and reports them all. */
    async function refuseAll(cases: BadWrite[]): Promise<void> {
      const problems: string[] = [];
      for (const c of cases) {
        const before = await stored();
        const res = await h.call(c.method, c.path, { key, ...c.options });
        const after = await stored();
        try {
          assertErrorShape(res, c.label);
          if (c.status !== undefined) assert.equal(res.status, c.status, `${c.label}: status (${res.text.slice(0, 200)})`);
          if (c.code !== undefined) assert.equal(res.json.error.code, c.code, `${c.label}: error code`);
          assert.deepEqual(after, before, `${c.label}: nothing is written`);
        } catch (error) {
          problems.push((error as Error).message.split('\n')[0]!);
        }
      }
      assert.deepEqual(problems, [], `${problems.length} of ${cases.length} bad writes were not refused cleanly`);
      // The record the bad writes aimed at is still readable, as it was.
      const read = await h.call('GET', `${records}/${TARGET}`, { key });
      assert.equal(read.status, 200, read.text);
      assert.deepEqual(read.json.data, TARGET_DATA);
      assert.equal(read.json.version, 1);
    }

    const writeRoutes = (): [string, string, string][] => [
      ['a record replace', 'PUT', `${records}/${TARGET}`],
      ['a record create', 'PUT', `${records}/fresh`],
      ['a collection redeclare', 'PUT', `${base}/collections/${COLLECTION}`],
      ['a collection declare', 'PUT', `${base}/collections/fresh`],
      ['an API key creation', 'POST', `${base}/api-keys`],
      ['a member invitation', 'POST', `${base}/members`],
    ];

    test('malformed JSON gets 400 with the JSON error shape on every write route, and writes nothing', async () => {
      const bodies = ['{', '{"email":', '{"a":1,}', "{'a':1}", 'nul', '[1,2', '{"a":1}{"b":2}', '{"a":1} trailing', '{"a":"\\x"}', '{"a":01}', '\u0000', '\uFEFF', ''];
      await refuseAll(
        writeRoutes().flatMap(([what, method, path]) =>
          bodies.map((body) => ({ label: `${what} with ${JSON.stringify(body)}`, method, path, options: { rawBody: body, headers: JSON_TYPE }, status: 400, code: 'bad_request' })),
        ),
      );
    });

    test('a body of the wrong JSON type or shape gets 400 and writes nothing', async () => {
      const rec = `${records}/${TARGET}`;
      const col = `${base}/collections/fresh`;
      const cases: [string, string, unknown][] = [
        ...['[]', '"text"', '42', 'null', 'true'].map((body): [string, string, unknown] => ['PUT', rec, { raw: body }]),
        ['PUT', rec, { email: { $ne: null } }],
        ['PUT', rec, { email: ['a@example.com'] }],
        ['PUT', col, { indexes: 'email' }],
        ['PUT', col, {}],
        ['PUT', col, { indexes: [{ field: 1 }] }],
        ['PUT', col, { indexes: [{ field: 'email', bits: '8' }] }],
        ['PUT', col, { indexes: [{ field: 'email', bits: 0 }] }],
        ['PUT', col, { indexes: [{ field: 'email', expectedRows: -5 }] }],
        ['PUT', col, { indexes: [{ field: 'not-a-field' }] }],
        ['PUT', col, { indexes: [{ field: 'email' }, { field: 'email' }] }],
        ['PUT', col, { indexes: [{ field: 'email', bits: 32, expectedRows: 1000 }] }],
        ['PUT', col, { indexes: Array.from({ length: 9 }, (_, i) => ({ field: `f${i}` })) }],
        ['PUT', col, { indexes: Array.from({ length: 33 }, (_, i) => ({ field: `f${i}` })) }],
        ['POST', `${base}/api-keys`, { scopes: 'admin' }],
        ['POST', `${base}/api-keys`, { scopes: [] }],
        ['POST', `${base}/api-keys`, { scopes: ['root'] }],
        ['POST', `${base}/api-keys`, { scopes: ['read', 'read', 'read', 'read'] }],
        ['POST', `${base}/api-keys`, { scopes: ['read'], expiresAt: 12 }],
        ['POST', `${base}/api-keys`, { scopes: ['read'], expiresAt: 'tomorrow' }],
        ['POST', `${base}/api-keys`, { scopes: ['read'], expiresAt: '2001-01-01T00:00:00Z' }],
        ['POST', `${base}/members`, { email: 5, role: 'viewer' }],
        ['POST', `${base}/members`, { email: 'someone@example.com', role: 'god' }],
        ['POST', `${base}/members`, { email: 'no-at-sign', role: 'viewer' }],
        ['POST', `${base}/members`, { email: 'two words@example.com', role: 'viewer' }],
        ['POST', `${base}/members`, { role: 'viewer' }],
      ];
      await refuseAll(
        cases.map(([method, path, body]) => {
          const rawBody = typeof body === 'object' && body !== null && 'raw' in body ? String((body as { raw: string }).raw) : JSON.stringify(body);
          return { label: `${method} ${path.slice(base.length)} ${rawBody.slice(0, 80)}`, method, path, options: { rawBody, headers: JSON_TYPE }, status: 400 };
        }),
      );
    });

    test('unknown fields in API bodies get 400 and write nothing', async () => {
      await refuseAll([
        { label: 'collection + extra', method: 'PUT', path: `${base}/collections/fresh`, options: { body: { indexes: [], extra: 1 } }, status: 400 },
        { label: 'collection + extra, existing', method: 'PUT', path: `${base}/collections/${COLLECTION}`, options: { body: { indexes: [{ field: 'email' }, { field: 'n', expectedRows: 1000 }], owner: 'x' } }, status: 400 },
        { label: 'index + unique', method: 'PUT', path: `${base}/collections/fresh`, options: { body: { indexes: [{ field: 'email', unique: true }] } }, status: 400 },
        { label: 'api key + admin', method: 'POST', path: `${base}/api-keys`, options: { body: { scopes: ['read'], admin: true } }, status: 400 },
        { label: 'api key + keyId', method: 'POST', path: `${base}/api-keys`, options: { body: { scopes: ['read'], keyId: 'aaaaaaaaaaaaaaaa' } }, status: 400 },
        { label: 'api key + tenantId', method: 'POST', path: `${base}/api-keys`, options: { body: { scopes: ['read'], tenantId: 't_aaaaaaaaaaaaaaaa' } }, status: 400 },
        { label: 'member + status', method: 'POST', path: `${base}/members`, options: { body: { email: 'x@example.com', role: 'viewer', status: 'active' } }, status: 400 },
      ]);
    });

    test('a record over the size limit gets 413 with the JSON error shape and writes nothing', async () => {
      const limit = h.core.limits.maxRecordBytes;
      const ofLength = (bytes: number) => `{"s":"${'x'.repeat(bytes - 8)}"}`;
      assert.equal(ofLength(limit).length, limit);
      await refuseAll([
        { label: 'a request body one byte over the record limit', method: 'PUT', path: `${records}/${TARGET}`, options: { rawBody: ofLength(limit + 1), headers: JSON_TYPE }, status: 413, code: 'payload_too_large' },
        { label: 'a request body far over the record limit', method: 'PUT', path: `${records}/big`, options: { rawBody: ofLength(limit * 4), headers: JSON_TYPE }, status: 413, code: 'payload_too_large' },
        { label: 'a record whose stored form (with its id) is over the limit', method: 'PUT', path: `${records}/${TARGET}`, options: { rawBody: ofLength(limit), headers: JSON_TYPE }, status: 413, code: 'payload_too_large' },
        { label: 'a collection declaration over the server body limit', method: 'PUT', path: `${base}/collections/fresh`, options: { rawBody: ofLength(h.config.server.bodyLimitBytes + 1), headers: JSON_TYPE }, status: 413, code: 'payload_too_large' },
      ]);
      // The limit is real, not lower than stated: a record well inside it is stored whole.
      const data = { s: 'é'.repeat(Math.floor((limit - 1024) / 2)) };
      const put = await h.call('PUT', `${records}/big-ok`, { key, body: data });
      assert.equal(put.status, 201, put.text.slice(0, 200));
      const read = await h.call('GET', `${records}/big-ok`, { key });
      assert.deepEqual(read.json.data, data);
    });

    test('invalid ids get a 4xx with the JSON error shape on every route, and writes nothing', async () => {
      const recordIds = ['x'.repeat(201), 'a%2Fb', 'a%20b', '%00', 'caf%C3%A9', '%', '%E0%A4%A', '%C0%AF', 'a%0Ab'];
      const tenantIds = ['t_x', 'T_AAAAAAAAAAAAAAAA', 'tenant', '%00', 't_' + 'a'.repeat(17)];
      const collections = ['People', '1abc', 'a'.repeat(64), 'a.b', '_x', 'a%2Fb', 'a%00'];
      const cases: BadWrite[] = [];
      for (const id of recordIds) {
        cases.push({ label: `PUT record id ${id.slice(0, 20)}`, method: 'PUT', path: `${records}/${id}`, options: { body: { a: 1 } } });
        cases.push({ label: `DELETE record id ${id.slice(0, 20)}`, method: 'DELETE', path: `${records}/${id}` });
      }
      for (const t of tenantIds) {
        cases.push({ label: `PUT record in tenant ${t}`, method: 'PUT', path: `/v1/tenants/${t}/collections/${COLLECTION}/records/${TARGET}`, options: { body: { a: 1 } } });
        cases.push({ label: `POST api key in tenant ${t}`, method: 'POST', path: `/v1/tenants/${t}/api-keys`, options: { body: { scopes: ['read'] } } });
      }
      for (const c of collections) {
        cases.push({ label: `PUT collection ${c.slice(0, 20)}`, method: 'PUT', path: `${base}/collections/${c}`, options: { body: { indexes: [] } } });
        cases.push({ label: `PUT record in collection ${c.slice(0, 20)}`, method: 'PUT', path: `${base}/collections/${c}/records/${TARGET}`, options: { body: { a: 1 } } });
      }
      cases.push({ label: 'PUT record in an undeclared collection', method: 'PUT', path: `${base}/collections/undeclared/records/${TARGET}`, options: { body: { a: 1 } }, status: 404 });
      cases.push({ label: 'DELETE api key bad id', method: 'DELETE', path: `${base}/api-keys/not-a-key-id` });
      cases.push({ label: 'DELETE api key unknown id', method: 'DELETE', path: `${base}/api-keys/${'a'.repeat(16)}`, status: 404 });
      cases.push({ label: 'DELETE member bad id', method: 'DELETE', path: `${base}/members/m_bad` });
      cases.push({ label: 'DELETE member unknown id', method: 'DELETE', path: `${base}/members/m_${'a'.repeat(16)}`, status: 404 });
      await refuseAll(cases);

      const reads: string[] = [
        ...recordIds.flatMap((id) => [`${records}/${id}`, `${records}/${id}/versions`]),
        ...tenantIds.flatMap((t) => [`/v1/tenants/${t}`, `/v1/tenants/${t}/audit`, `/v1/tenants/${t}/collections/${COLLECTION}/records`]),
        ...collections.map((c) => `${base}/collections/${c}/records`),
      ];
      const problems: string[] = [];
      for (const path of reads) {
        const res = await h.call('GET', path, { key });
        try {
          assertErrorShape(res, `GET ${path.slice(0, 120)}`);
        } catch (error) {
          problems.push((error as Error).message.split('\n')[0]!);
        }
      }
      assert.deepEqual(problems, [], `${problems.length} of ${reads.length} bad reads were not refused cleanly`);
    });

    test('record ids of up to the documented 200 characters are accepted and read back', async () => {
      for (const id of ['a'.repeat(101), 'b'.repeat(150), `${'c'.repeat(190)}:@~.-_${'9'.repeat(4)}`]) {
        const put = await h.call('PUT', `${records}/${id}`, { key, body: { length: id.length } });
        assert.equal(put.status, 201, `a ${id.length}-character id: ${put.status} ${put.text.slice(0, 160)}`);
        const read = await h.call('GET', `${records}/${id}`, { key });
        assert.equal(read.json?.id, id);
        assert.deepEqual(read.json?.data, { length: id.length });
      }
    });

    test('invalid cursors, page sizes and query parameters get 400 with the JSON error shape', async () => {
      const list = `${base}/collections/${COLLECTION}/records`;
      const queries = [
        `${list}?cursor=not-a-cursor`,
        `${list}?cursor=`,
        `${list}?cursor=${'A'.repeat(42)}`,
        `${list}?cursor=${'A'.repeat(44)}`,
        `${list}?cursor=${'x'.repeat(129)}`,
        `${list}?cursor=%00`,
        `${list}?cursor=${encodeComponent('é'.repeat(43))}`,
        `${list}?cursor=a&cursor=b`,
        `${list}?limit=0`,
        `${list}?limit=-1`,
        `${list}?limit=abc`,
        `${list}?limit=10000`,
        `${list}?limit=1.5`,
        `${list}?limit=`,
        `${list}?limit=1&limit=2`,
        `${list}?unknown=1`,
        `${list}?where.nonindexed=1`,
        `${list}?where.bad-field=1`,
        `${list}?where.email[]=x`,
        `${list}?where.email=a&where.email=b`,
        `${list}?where.email=${'x'.repeat(4097)}`,
        `${list}?where.__proto__=1`,
        `${list}?__proto__=1`,
        `${base}/audit?cursor=abc`,
        `${base}/audit?cursor=-1`,
        `${base}/audit?cursor=${'9'.repeat(16)}`,
        `${base}/audit?limit=0`,
        `${base}/audit?limit=many`,
        `${base}/audit?since=yesterday`,
      ];
      const problems: string[] = [];
      for (const path of queries) {
        const res = await h.call('GET', path, { key });
        try {
          assertErrorShape(res, `GET ${path.slice(base.length, base.length + 100)}`);
          assert.equal(res.status, 400, `GET ${path.slice(base.length, base.length + 100)}: status`);
        } catch (error) {
          problems.push((error as Error).message.split('\n')[0]!);
        }
      }
      assert.deepEqual(problems, [], `${problems.length} of ${queries.length} bad queries were not refused cleanly`);
    });

    test('a wrong If-Match or If-None-Match gets 412 or 400 and writes nothing', async () => {
      const rec = `${records}/${TARGET}`;
      const put = (label: string, headers: Record<string, string>, status: number, path = rec): BadWrite => ({
        label,
        method: 'PUT',
        path,
        options: { body: { replaced: true }, headers },
        status,
      });
      await refuseAll([
        put('a stale version', { 'if-match': '"2"' }, 412),
        put('a far version', { 'if-match': '"9999999999"' }, 412),
        put('a weak ETag', { 'if-match': 'W/"1"' }, 400),
        put('an unquoted version', { 'if-match': '1' }, 400),
        put('version 0', { 'if-match': '"0"' }, 400),
        put('a list of ETags', { 'if-match': '"1", "2"' }, 400),
        put('garbage', { 'if-match': 'garbage' }, 400),
        put('an over-long value', { 'if-match': `"${'1'.repeat(80)}"` }, 400),
        put('If-None-Match with an ETag', { 'if-none-match': '"1"' }, 400),
        put('If-None-Match * on an existing record', { 'if-none-match': '*' }, 412),
        put('If-Match on a record that does not exist', { 'if-match': '"1"' }, 412, `${records}/does-not-exist`),
        put('If-Match * on a record that does not exist', { 'if-match': '*' }, 412, `${records}/does-not-exist`),
        { label: 'DELETE with a stale version', method: 'DELETE', path: rec, options: { headers: { 'if-match': '"2"' } }, status: 412 },
        { label: 'DELETE with a weak ETag', method: 'DELETE', path: rec, options: { headers: { 'if-match': 'W/"1"' } }, status: 400 },
      ]);
    });

    test('an unsupported content type gets 415 (text/plain: 400) and writes nothing', async () => {
      const rec = `${records}/${TARGET}`;
      const send = (type: string | undefined, body: string, status: number): BadWrite => ({
        label: `content-type ${type ?? '(none)'}`,
        method: 'PUT',
        path: rec,
        options: { rawBody: body, headers: type === undefined ? {} : { 'content-type': type } },
        status,
      });
      await refuseAll([
        send('application/xml', '<a>1</a>', 415),
        send('application/x-www-form-urlencoded', 'email=x', 415),
        send('multipart/form-data; boundary=x', '--x--', 415),
        send('application/octet-stream', '{"a":1}', 415),
        send('application/json-patch+json', '[]', 415),
        send(undefined, '{"a":1}', 415),
        send('text/plain', '{"a":1}', 400),
        { label: 'an API key body as form data', method: 'POST', path: `${base}/api-keys`, options: { rawBody: 'scopes=admin', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, status: 415 },
      ]);
    });

    // ---- properties -------------------------------------------------------------------------

    /** A request without URL normalisation, so hostile paths reach the server as generated. */
    async function send(method: 'GET' | 'PUT' | 'DELETE', path: string, options: { headers?: Record<string, string>; body?: string } = {}): Promise<Response> {
      return readResponse(
        await raw.request({ origin: h.url, path, method, headers: { authorization: `Bearer ${key}`, ...options.headers }, body: options.body }),
      );
    }

    /** The server's error log line for a response, for the evidence of a 5xx. */
    const serverError = (res: Response) =>
      h.logs.lines.find((line) => line.includes(String(res.headers['x-request-id'])) && line.includes('"level":50'))?.slice(0, 1200) ?? '(no error logged)';

    let fresh = 0;
    const freshId = () => `fuzz-${++fresh}`;

    /**
     * The invariant for one write: never a 5xx; a 4xx has the error shape and changes nothing; a
     * 2xx appends exactly one version and one audit event, and reads back.
     */
    async function checkWrite(path: string, body: string, headers: Record<string, string>): Promise<void> {
      const before = await stored();
      const res = await send('PUT', path, { body, headers });
      const after = await stored();
      const committed = isDeepStrictEqual(after, before) ? 'nothing was written' : 'YET THE WRITE WAS COMMITTED';
      assert.ok(res.status < 500, `a ${res.status} for PUT ${path.slice(0, 120)} (${committed}): ${res.text.slice(0, 200)}\n${serverError(res)}`);
      if (!isOk(res.status)) {
        assertErrorShape(res, `PUT ${path.slice(0, 120)}`);
        assert.deepEqual(after, before, 'a refused write changes nothing');
        return;
      }
      assert.equal(after.rows.record_versions, before.rows.record_versions + 1, 'one new version');
      assert.equal(after.rows.audit_events, before.rows.audit_events + 1, 'one audit event');
      const expected: unknown = JSON.parse(body);
      assert.ok(sameJson(res.json.data, expected), `the write answers with what was sent: ${preview(res.json.data)} vs ${preview(expected)}`);
      const read = await send('GET', path);
      assert.equal(read.status, 200, read.text.slice(0, 300));
      assert.ok(sameJson(read.json.data, expected), `an accepted write reads back exactly: ${preview(read.json.data)} vs ${preview(expected)}`);
      assert.equal(read.headers.etag, `"${res.json.version}"`);
    }

    const hostileKey = fc.oneof(
      fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'then', '', ' ', '\u0000', 'id', 'data', 'version', '$where', 'email', 'n'),
      fc.string({ unit: 'binary', maxLength: 12 }),
    );
    const hostileValue = fc.jsonValue({ maxDepth: 4, stringUnit: 'binary' });
    const hostileObject = fc.dictionary(hostileKey, hostileValue, { maxKeys: 8 });

    test('hostile record ids never get a 5xx; refused ids get the error shape; accepted ids read back', { timeout: 60_000 }, async () => {
      const protoBefore = Object.getOwnPropertyNames(Object.prototype);
      const id = fc.oneof(
        fc.string({ unit: 'binary', minLength: 0, maxLength: 260 }),
        fc.stringMatching(/^[A-Za-z0-9._~:@-]{1,210}$/),
        // Long ids around the documented 200-character bound, which short random strings rarely reach.
        fc.tuple(fc.integer({ min: 90, max: 220 }), fc.constantFrom('a', 'Z', '9', '~', ':', '@', '-', '_')).map(([n, c]) => `x${c.repeat(n - 1)}`),
        fc.constantFrom('.', '..', '...', '__proto__', 'constructor', 'prototype', 'versions', 'records', 'a/b', '../x', '%', '%2e%2e', ' ', '\u0000', '\uFFFF', '\uD800', '🙂', 'é'),
      );
      await fc.assert(
        fc.asyncProperty(id, fc.boolean(), async (recordId, encode) => {
          const segment = encode ? encodeComponent(recordId) : recordId.replace(/[^\x21-\x7e]/g, (c) => encodeComponent(c));
          await checkWrite(`${records}/${segment}`, JSON.stringify({ probe: recordId }), JSON_TYPE);
        }),
        { numRuns: 80, interruptAfterTimeLimit: 25_000 },
      );
      assert.deepEqual(Object.getOwnPropertyNames(Object.prototype), protoBefore, 'Object.prototype is untouched');
    });

    test('hostile JSON bodies never get a 5xx; refused bodies write nothing; accepted bodies read back exactly', { timeout: 60_000 }, async () => {
      const protoBefore = Object.getOwnPropertyNames(Object.prototype);
      const limit = h.core.limits.maxRecordBytes;
      const body = fc.oneof(
        { weight: 6, arbitrary: hostileObject.map((o) => JSON.stringify(o)) },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
        {
          weight: 2,
          arbitrary: fc
            .tuple(fc.integer({ min: limit - 64, max: limit + 64 }), fc.constantFrom('x', 'é', '🙂', '\\u0000', '"'))
            .map(([size, unit]) => {
              const chunk = unit === '"' ? '\\"' : unit;
              const text = `{"s":"${chunk.repeat(Math.max(0, Math.floor((size - 8) / Buffer.byteLength(chunk))))}"}`;
              return text;
            }),
        },
        { weight: 1, arbitrary: fc.constantFrom('{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}', '{"a":{"__proto__":{"polluted":1}}}', '{"constructor":1}', '{"__proto__":null}') },
      );
      await fc.assert(
        fc.asyncProperty(body, async (text) => {
          await checkWrite(`${records}/${freshId()}`, text, JSON_TYPE);
        }),
        { numRuns: 60, interruptAfterTimeLimit: 25_000 },
      );
      assert.deepEqual(Object.getOwnPropertyNames(Object.prototype), protoBefore, 'Object.prototype is untouched');
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    });

    test('deeply nested JSON bodies never get a 5xx; accepted ones read back exactly', { timeout: 60_000 }, async () => {
      let deepRuns = 0;
      // Generated as (depth, kind) so a counterexample prints short; the body is built in the property.
      const nested = fc.tuple(fc.integer({ min: 1, max: 20_000 }), fc.constantFrom('array', 'object'));
      await fc.assert(
        fc.asyncProperty(nested, async ([depth, kind]) => {
          const text = kind === 'array' ? `{"deep":${'['.repeat(depth)}${']'.repeat(depth)}}` : `{"deep":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`;
          // A collection per run, so a record stored by one run cannot fail the next.
          const collection = `${base}/collections/deep-${++deepRuns}`;
          const declared = await send('PUT', collection, { body: '{"indexes":[]}', headers: JSON_TYPE });
          assert.equal(declared.status, 201, declared.text);
          await checkWrite(`${collection}/records/${freshId()}`, text, JSON_TYPE);
          // Whatever was accepted must not break the listing of its collection.
          const list = await send('GET', `${collection}/records`);
          assert.equal(list.status, 200, `listing after a depth-${depth} ${kind}: ${list.text.slice(0, 200)}\n${serverError(list)}`);
        }),
        { numRuns: 25, interruptAfterTimeLimit: 20_000 },
      );
    });

    test('hostile query strings on the record list never get a 5xx; refusals have the error shape', { timeout: 60_000 }, async () => {
      const list = `${base}/collections/${COLLECTION}/records`;
      const name = fc.oneof(
        fc.constantFrom('limit', 'cursor', 'where.email', 'where.n', 'where.__proto__', 'where.constructor', '__proto__', 'constructor', 'where.', 'where', 'where.email.x', 'where.a-b', 'LIMIT', 'where.email[]', ''),
        fc.string({ unit: 'binary', maxLength: 20 }),
      );
      const value = fc.oneof(
        fc.constantFrom('0', '1', '500', '501', '1000', '9999', '-1', '1e3', 'null', 'true', '{}', '[]', '', 'A'.repeat(43), 'target@example.com', '1'),
        fc.string({ unit: 'binary', maxLength: 60 }),
      );
      const query = fc.oneof(
        fc.array(fc.tuple(name, value), { maxLength: 5 }).map((pairs) => pairs.map(([k, v]) => `${encodeComponent(k)}=${encodeComponent(v)}`).join('&')),
        fc.constantFrom('&&', '=', 'a=%', '%zz', 'limit=%', 'where.email=%E0%A4%A', 'limit=1&limit=1', '&where.email=target%40example.com&'),
      );
      await fc.assert(
        fc.asyncProperty(query, async (q) => {
          const res = await send('GET', `${list}?${q}`);
          assert.ok(res.status < 500, `a ${res.status} for ?${q}: ${res.text.slice(0, 300)}\n${serverError(res)}`);
          if (res.status === 200) {
            assert.ok(Array.isArray(res.json.records), 'a page of records');
            for (const r of res.json.records as { id: unknown; data: unknown }[]) assert.equal(typeof r.id, 'string');
          } else {
            assertErrorShape(res, `GET ?${q.slice(0, 100)}`);
          }
        }),
        { numRuns: 100, interruptAfterTimeLimit: 20_000 },
      );
    });

    test('hostile headers on record writes never get a 5xx; accepted writes read back exactly', { timeout: 60_000 }, async () => {
      const headerName = fc.constantFrom('if-match', 'if-none-match', 'content-type', 'accept', 'accept-encoding', 'content-encoding', 'x-forwarded-for', 'x-request-id', 'accept-charset', 'range', 'origin', 'x-http-method-override');
      const printable = fc.string({ unit: 'binary-ascii', maxLength: 80 }).map((s) => s.replace(/[^\x20-\x7e]/g, '').trim());
      const headerValue = fc.oneof(
        fc.constantFrom('*', '"1"', 'W/"1"', '"0"', '', 'application/json', 'application/json; charset=utf-8', 'text/plain', 'application/xml', 'gzip', 'br', 'identity', 'DELETE', '*/*', 'bytes=0-1', '1.2.3.4, 5.6.7.8'),
        printable,
      );
      const headers = fc.dictionary(headerName, headerValue, { maxKeys: 4 });
      await fc.assert(
        fc.asyncProperty(headers, hostileObject, async (hs, data) => {
          await checkWrite(`${records}/${freshId()}`, JSON.stringify(data), { ...JSON_TYPE, ...hs });
        }),
        { numRuns: 60, interruptAfterTimeLimit: 25_000 },
      );
    });
  });
}
