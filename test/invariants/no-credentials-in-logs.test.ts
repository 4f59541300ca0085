// Invariant 2: no credential in logs or storage. A session of API calls — keys created and revoked,
// failed authentication with wrong secrets and misplaced keys, valid calls, errors — then every log
// line and every byte of the database is searched for each key and its secret. The key ids, which
// are not secret and are stored in clear, must be found: that proves the scan reads the data.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { databaseFiles, describeFound, filesUnder, scanFiles } from '../support/disk-scan.js';
import { apiKeyParts, DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

after(stopPostgres);

for (const driver of DRIVERS) {
  describe(`no API key secret in logs or storage on ${driver}`, () => {
    let h: Harness;
    const keys: string[] = [];
    const statuses: number[] = [];

    before(async () => {
      h = await startHarness(driver);
      const owner = await h.tenant('creds');
      const other = await h.tenant('other');
      keys.push(owner.apiKey, other.apiKey);
      const t = `/v1/tenants/${owner.tenantId}`;
      const call = async (method: string, path: string, options: Parameters<Harness['call']>[2] = {}) => {
        const res = await h.call(method, path, options);
        statuses.push(res.status);
        return res;
      };

      // Keys of every scope, one with an expiry, one revoked.
      const created: Record<string, string> = {};
      for (const [name, body] of Object.entries({
        read: { scopes: ['read'] },
        write: { scopes: ['write'] },
        admin: { scopes: ['admin'], expiresAt: new Date(Date.now() + 3_600_000).toISOString() },
        revoked: { scopes: ['read', 'write'] },
      })) {
        const res = await call('POST', `${t}/api-keys`, { key: owner.apiKey, body });
        assert.equal(res.status, 201, res.text);
        created[name] = res.json.apiKey as string;
        keys.push(res.json.apiKey as string);
      }
      const revokedId = apiKeyParts(created.revoked!).keyId;
      assert.equal((await call('DELETE', `${t}/api-keys/${revokedId}`, { key: owner.apiKey })).status, 204);

      // Valid calls.
      assert.equal((await call('PUT', `${t}/collections/notes`, { key: created.admin, body: { indexes: [{ field: 'kind' }] } })).status, 201);
      assert.equal((await call('PUT', `${t}/collections/notes/records/n1`, { key: created.write, body: { kind: 'memo', text: 'hello' } })).status, 201);
      assert.equal((await call('GET', `${t}/collections/notes/records/n1`, { key: created.read })).status, 200);
      assert.equal((await call('GET', `${t}/collections/notes/records?where.kind=memo`, { key: created.read })).status, 200);
      assert.equal((await call('GET', `${t}/api-keys`, { key: owner.apiKey })).status, 200);
      assert.equal((await call('GET', `${t}/audit`, { key: owner.apiKey })).status, 200);

      // Failed authentication: a right key id with a wrong secret, and the other way round.
      const { keyId, secret } = apiKeyParts(created.read!);
      const wrongSecret = `sr_${keyId}_${randomBytes(32).toString('base64url')}`;
      const wrongId = `sr_${'a'.repeat(16)}_${secret}`;
      keys.push(wrongSecret, wrongId);
      for (const presented of [wrongSecret, wrongId, created.revoked!, `${created.read!}x`, secret]) {
        assert.equal((await call('GET', t, { key: presented })).status, 401);
      }
      // Keys in the wrong places: other schemes, another header, the query string, the path, the body.
      const misplaced: [string, Parameters<Harness['call']>[2]][] = [
        [t, { headers: { authorization: `Basic ${Buffer.from(`user:${created.admin!}`).toString('base64')}` } }],
        [t, { headers: { authorization: `bearer ${created.admin!}` } }],
        [t, { headers: { authorization: `Bearer ${created.admin!} trailing` } }],
        [t, { headers: { 'x-api-key': created.admin! } }],
        [t, { headers: { cookie: `session=${created.admin!}` } }],
        [`${t}?apiKey=${created.admin!}&token=${created.admin!}`, {}],
        [`/v1/nowhere/${created.admin!}`, { key: created.admin! }],
      ];
      for (const [path, options] of misplaced) {
        const res = await call('GET', path, options);
        assert.ok([401, 404].includes(res.status), `${path}: ${res.status}`);
      }
      // Errors with a valid key: bad input, missing things, insufficient scope, another tenant.
      assert.equal((await call('PUT', `${t}/collections/notes/records/n2`, { key: created.write, rawBody: '{"broken', headers: { 'content-type': 'application/json' } })).status, 400);
      assert.equal((await call('PUT', `${t}/collections/notes/records/not%20an%20id`, { key: created.write, body: {} })).status, 400);
      assert.equal((await call('GET', `${t}/collections/notes/records/missing`, { key: created.read })).status, 404);
      assert.equal((await call('PUT', `${t}/collections/notes/records/n3`, { key: created.read, body: {} })).status, 403);
      assert.equal((await call('POST', `${t}/api-keys`, { key: created.write, body: { scopes: ['admin'] } })).status, 403);
      assert.equal((await call('GET', `/v1/tenants/${other.tenantId}`, { key: created.admin })).status, 404);
      assert.equal((await call('POST', `${t}/api-keys`, { key: owner.apiKey, body: { scopes: ['read'], apiKey: created.admin } })).status, 400);
    });
    after(() => h.close());

    const needles = () => keys.flatMap((k) => [k, apiKeyParts(k).secret]);

    test('the session exercised successes, failed authentication and errors', () => {
      for (const status of [200, 201, 204, 400, 401, 403, 404]) assert.ok(statuses.includes(status), `a ${status} answer`);
    });

    test('no API key nor its secret appears in any log line, though every request was logged', () => {
      const requestLines = h.logs.lines.filter((line) => line.includes('"msg":"request"'));
      assert.ok(requestLines.length >= statuses.length, `${requestLines.length} request log lines for ${statuses.length} requests`);
      assert.ok(requestLines.some((line) => line.includes('"status":401')), 'the failed authentications were logged');
      const leaking = h.logs.lines.filter((line) => needles().some((needle) => line.includes(needle)));
      assert.deepEqual(leaking, [], 'log lines that carry an API key or its secret');
    });

    test('no API key nor its secret is stored in the database files nor the data directory, though the key ids are', async () => {
      const keyIds = keys.slice(0, 6).map((k) => apiKeyParts(k).keyId);
      const files = [...new Set([...(await databaseFiles(h)), ...filesUnder(h.config.dataDir)])];
      const scan = scanFiles(files, [...needles(), ...keyIds]);
      for (const keyId of keyIds) assert.ok(scan.found.has(keyId), `the key id ${keyId}, not secret, is found in the database (${scan.files} files)`);
      const leaked = new Map([...scan.found].filter(([needle]) => !keyIds.includes(needle)));
      assert.equal(leaked.size, 0, `credentials stored at rest: ${describeFound(leaked)}`);
    });
  });
}
