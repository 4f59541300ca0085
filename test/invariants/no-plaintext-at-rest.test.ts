// Invariant 1: no customer plaintext at rest. Records whose ids, bodies, keys and indexed values
// carry unique markers are written, updated, deleted, queried and looked up; then every byte the
// database keeps on disk is scanned for the markers. Strings that ARE stored in clear (the tenant
// name, the collection name) must be found, which proves the scan reads the right files.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { databaseFiles, describeFound, filesUnder, marker, scanFiles, sqliteFiles } from '../support/disk-scan.js';
import { DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

after(stopPostgres);

for (const driver of DRIVERS) {
  describe(`no customer plaintext at rest on ${driver}`, () => {
    let h: Harness;
    let t: { tenantId: string; apiKey: string };
    // Stored in clear by design: names an operator and the tenant chose for their own bookkeeping.
    const tenantName = `Plaintext Control ${randomBytes(6).toString('hex')}`;
    const collection = `ctl-${randomBytes(6).toString('hex')}`;
    const m = {
      liveId: marker('liveid'),
      deletedId: marker('deletedid'),
      missingId: marker('missingid'),
      email: marker('email'),
      ssn: marker('ssn'),
      note: marker('note'),
      oldNote: marker('oldnote'),
      nested: marker('nested'),
      fieldName: marker('fieldname'),
      deletedBody: marker('deletedbody'),
      queryOnly: marker('queryonly'),
      memberEmail: marker('member'),
    };
    const markers = Object.values(m);

    before(async () => {
      h = await startHarness(driver);
      t = await h.tenant(tenantName);
      const base = `/v1/tenants/${t.tenantId}/collections/${collection}`;
      const call = async (method: string, path: string, body: unknown, expected: number) => {
        const res = await h.call(method, path, { key: t.apiKey, body });
        assert.equal(res.status, expected, `${method} ${path}: ${res.text}`);
        return res;
      };
      await call('PUT', base, { indexes: [{ field: 'email' }, { field: 'ssn', expectedRows: 1000 }] }, 201);
      // A first version, then a second: the first lives on in the version history.
      await call('PUT', `${base}/records/${m.liveId}`, { email: m.email, ssn: m.ssn, note: m.oldNote }, 201);
      await call(
        'PUT',
        `${base}/records/${m.liveId}`,
        { email: m.email, ssn: m.ssn, note: m.note, nested: { list: [1, { deep: m.nested }] }, [m.fieldName]: true },
        200,
      );
      await call('PUT', `${base}/records/${m.deletedId}`, { email: `${m.deletedBody}@example.com`, note: m.deletedBody }, 201);
      await call('DELETE', `${base}/records/${m.deletedId}`, undefined, 204);
      // Reads are audited with their target: a miss, a query by value, a history.
      await call('GET', `${base}/records/${m.missingId}`, undefined, 404);
      await call('GET', `${base}/records?where.email=${m.email}&where.ssn=${m.queryOnly}`, undefined, 200);
      await call('GET', `${base}/records/${m.deletedId}/versions`, undefined, 200);
      await call('POST', `/v1/tenants/${t.tenantId}/members`, { email: `${m.memberEmail}@example.com`, role: 'viewer' }, 201);

      // The markers really went in: they come back through the API.
      const read = await call('GET', `${base}/records/${m.liveId}`, undefined, 200);
      assert.equal(read.json.data.nested.list[1].deep, m.nested);
      assert.equal(read.json.data[m.fieldName], true);
      const found = await call('GET', `${base}/records?where.email=${m.email}`, undefined, 200);
      assert.deepEqual(found.json.records.map((r: { id: string }) => r.id), [m.liveId]);
    });
    after(() => h.close());

    test('no marker is in the stored database files nor the data directory, while the strings stored in clear are', async () => {
      // The database (SQLite file and WAL, or the whole PostgreSQL cluster), plus the data directory: key store, certificates.
      const files = [...new Set([...(await databaseFiles(h)), ...filesUnder(h.config.dataDir)])];
      if (driver === 'sqlite') {
        // Read as they are, before any checkpoint: the recent writes are in the WAL.
        const wal = `${h.config.database.sqlite.file!}-wal`;
        assert.ok(files.includes(wal), 'the SQLite WAL file exists while the server runs');
        assert.ok(statSync(wal).size > 0, 'the WAL holds the recent writes');
      }
      const scan = scanFiles(files, [...markers, tenantName, collection]);
      assert.ok(scan.files > 0 && scan.bytes > 0, 'the scan read some files');
      assert.ok(scan.found.has(tenantName), `the tenant name, stored in clear, is found by the scan (${scan.files} files, ${scan.bytes} bytes)`);
      assert.ok(scan.found.has(collection), 'the collection name, stored in clear, is found by the scan');
      if (driver === 'sqlite') {
        const wal = `${h.config.database.sqlite.file!}-wal`;
        assert.ok(scan.found.get(collection)?.includes(wal), 'the scan reads the WAL: the collection name written there is found in it');
      }
      const leaked = new Map([...scan.found].filter(([needle]) => markers.includes(needle)));
      assert.equal(leaked.size, 0, `customer plaintext found at rest: ${describeFound(leaked)}`);
    });

    test('no marker is in any log line', () => {
      assert.ok(h.logs.lines.length > 0, 'the server logged its requests');
      const leaking = h.logs.lines.filter((line) => markers.some((mk) => line.includes(mk)));
      assert.deepEqual(leaking, [], 'log lines carrying customer data');
    });

    if (driver === 'sqlite') {
      test('after the database is closed and its WAL checkpointed into the file, no marker is in the file', async () => {
        await h.server.close();
        await h.core.close();
        const files = sqliteFiles(h);
        assert.ok(files.includes(h.config.database.sqlite.file!), 'the database file is still there');
        const scan = scanFiles(files, [...markers, tenantName, collection]);
        assert.ok(scan.found.get(tenantName)?.includes(h.config.database.sqlite.file!), 'the tenant name, stored in clear, is found in the database file');
        assert.ok(scan.found.get(collection)?.includes(h.config.database.sqlite.file!), 'the collection name is found in the database file');
        const leaked = new Map([...scan.found].filter(([needle]) => markers.includes(needle)));
        assert.equal(leaked.size, 0, `customer plaintext found at rest: ${describeFound(leaked)}`);
      });
    }
  });
}
