import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import tar from 'tar-stream';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { approveAccessRequest, requestAccess } from '../../src/core/access-requests.js';
import type { Principal } from '../../src/core/context.js';
import { buildPendingExports, expireExports } from '../../src/core/lifecycle/exports.js';
import { operatorId } from '../../src/identity/operators.js';
import { postgresEnv, runCli } from '../support/cli-process.js';
import { marker } from '../support/disk-scan.js';
import { startIdentityProviders, type IdentityProviders } from '../support/identity-providers.js';
import { DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

let idp: IdentityProviders;
before(async () => {
  idp = await startIdentityProviders();
});
after(async () => {
  await idp.close();
  await stopPostgres();
});

const DAY = 86_400_000;
const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

interface TarEntry {
  name: string;
  body: Buffer;
}

async function untar(archive: Buffer): Promise<TarEntry[]> {
  const extract = tar.extract();
  const entries: TarEntry[] = [];
  const read = (async () => {
    for await (const entry of extract) {
      const parts: Buffer[] = [];
      for await (const chunk of entry) parts.push(chunk as Buffer);
      entries.push({ name: entry.header.name, body: Buffer.concat(parts) });
    }
  })();
  extract.end(archive);
  await read;
  return entries;
}

const jsonLines = (body: Buffer) =>
  body
    .toString('utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);

for (const driver of DRIVERS) {
  describe(`tenant export on ${driver}`, () => {
    let h: Harness;
    let now = Date.now();
    let t: { tenantId: string; apiKey: string };
    let other: { tenantId: string; apiKey: string };
    let base: string;
    let owner: Principal;
    let readKey: string;
    const secret = marker('export-secret');
    const fileSecret = marker('export-file');
    const collections = { notes: ['a', 'b', 'c'], people: ['p1', 'p2'] };
    const paths = ['docs/readme.txt', 'img/logo.bin', 'gone.txt', 'docs/naïve name @2.txt'];
    const logo = randomBytes(200_000);
    const oidc = (claims: Record<string, unknown>) => idp.oidcToken(claims, now);
    const ownerToken = () => oidc({ sub: 'owner-x', email: 'owner@export.example', email_verified: true });
    const viewerToken = () => oidc({ sub: 'viewer-x', email: 'viewer@export.example', email_verified: true });
    const as = async (token: Promise<string>, method: string, path: string, body?: unknown) =>
      h.call(method, path, { headers: { authorization: `Bearer ${await token}` }, ...(body === undefined ? {} : { body }) });
    const ok = (res: { status: number; text: string }, status: number) => assert.equal(res.status, status, res.text);
    const put = async (path: string, body: string | Buffer, contentType = 'text/plain') => ok(await h.call('PUT', `${base}/files/${path}`, { key: t.apiKey, rawBody: body, headers: { 'content-type': contentType } }), 201);

    /** Has the exports asked for built: here, or by the server's job runner if it took them first. */
    async function settle() {
      await buildPendingExports(h.core);
      const building = () => h.core.db.reader.selectFrom('exports').select('export_id').where('tenant_id', '=', t.tenantId).where('status', '=', 'building').execute();
      while ((await building()).length > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }

    /** Asks for an export, has it built, and reads its status. */
    async function exportNow(includeVersions: boolean) {
      const asked = await h.call('POST', `${base}/exports`, { key: t.apiKey, body: { includeVersions } });
      assert.equal(asked.status, 202, asked.text);
      assert.equal(asked.json.status, 'building');
      assert.equal(asked.json.download, null);
      await settle();
      const status = await h.call('GET', `${base}/exports/${asked.json.exportId}`, { key: t.apiKey });
      assert.equal(status.status, 200, status.text);
      return status.json;
    }

    const download = (url: string, headers: Record<string, string> = {}) => h.call('GET', new URL(url).pathname, { headers });

    before(async () => {
      h = await startHarness(driver, {
        now: () => now,
        env: {
          ...idp.env(),
          STRONGROOM_OPERATORS__IDENTITIES: JSON.stringify([
            { issuer: idp.issuer, subject: 'sre-x', roles: ['sre'] },
            { issuer: idp.issuer, subject: 'support-x', roles: ['support'] },
          ]),
        },
      });
      t = await h.tenant('exporting');
      other = await h.tenant('other');
      base = `/v1/tenants/${t.tenantId}`;
      for (const [email, role] of [['owner@export.example', 'owner'], ['viewer@export.example', 'viewer']] as const) {
        const invited = await h.call('POST', `${base}/members`, { key: t.apiKey, body: { email, role } });
        ok(invited, 201);
        if (role === 'owner') owner = { kind: 'member', tenantId: t.tenantId, memberId: invited.json.memberId, role };
      }
      ok(await as(ownerToken(), 'GET', base), 200);
      ok(await as(viewerToken(), 'GET', base), 200);
      const read = await h.call('POST', `${base}/api-keys`, { key: t.apiKey, body: { scopes: ['read'] } });
      ok(read, 201);
      readKey = read.json.apiKey;
      for (const collection of Object.keys(collections)) ok(await h.call('PUT', `${base}/collections/${collection}`, { key: t.apiKey, body: { indexes: [] } }), 201);
      // Several versions, a delete, and a record put again after its delete.
      for (let v = 1; v <= 3; v += 1) await h.call('PUT', `${base}/collections/notes/records/a`, { key: t.apiKey, body: { text: `${secret} v${v}`, n: v } });
      await h.call('PUT', `${base}/collections/notes/records/b`, { key: t.apiKey, body: { text: 'to be deleted' } });
      ok(await h.call('DELETE', `${base}/collections/notes/records/b`, { key: t.apiKey }), 204);
      await h.call('PUT', `${base}/collections/notes/records/c`, { key: t.apiKey, body: { text: 'first life' } });
      ok(await h.call('DELETE', `${base}/collections/notes/records/c`, { key: t.apiKey }), 204);
      await h.call('PUT', `${base}/collections/notes/records/c`, { key: t.apiKey, body: { text: 'second life', nested: { list: [1, 'two', null] } } });
      await h.call('PUT', `${base}/collections/people/records/p1`, { key: t.apiKey, body: { name: 'Ada' } });
      for (const name of ['Bob', 'Robert']) await h.call('PUT', `${base}/collections/people/records/p2`, { key: t.apiKey, body: { name } });
      await put('docs/readme.txt', `${fileSecret} first`);
      await put('docs/readme.txt', `${fileSecret} second, longer`);
      await put('img/logo.bin', logo, 'application/octet-stream');
      await put('gone.txt', 'soon gone');
      ok(await h.call('DELETE', `${base}/files/gone.txt`, { key: t.apiKey }), 204);
      await put('docs/naïve name @2.txt', 'a path of its own');
      ok(await h.call('PUT', `/v1/tenants/${other.tenantId}/collections/notes`, { key: other.apiKey, body: { indexes: [] } }), 201);
    });
    after(() => h.close());

    /** What the API says the tenant holds, to compare an archive with. */
    async function viaApi() {
      const records: Record<string, unknown[]> = {};
      const versions: Record<string, Record<string, unknown[]>> = {};
      for (const [collection, ids] of Object.entries(collections)) {
        const list = await h.call('GET', `${base}/collections/${collection}/records?limit=100`, { key: t.apiKey });
        ok(list, 200);
        records[collection] = list.json.records;
        versions[collection] = {};
        for (const id of ids) versions[collection]![id] = (await h.call('GET', `${base}/collections/${collection}/records/${id}/versions`, { key: t.apiKey })).json.versions;
      }
      const listed = await h.call('GET', `${base}/files?limit=100`, { key: t.apiKey });
      ok(listed, 200);
      const files = new Map<string, { view: Record<string, unknown>; bytes: Buffer }>();
      for (const view of listed.json.files) files.set(view.path, { view, bytes: (await h.call('GET', `${base}/files/${view.path}`, { key: t.apiKey })).bytes });
      const fileVersions = new Map<string, Buffer>();
      const fileDeletions: { path: string; version: number }[] = [];
      for (const path of paths) {
        for (const v of (await h.call('GET', `${base}/file-versions/${path}`, { key: t.apiKey })).json.versions) {
          if (v.op === 'delete') fileDeletions.push({ path, version: v.version });
          else fileVersions.set(`${path}@${v.version}`, (await h.call('GET', `${base}/files/${path}?version=${v.version}`, { key: t.apiKey })).bytes);
        }
      }
      return { records, versions, files, fileVersions, fileDeletions };
    }

    /** Checks an archive entry by entry against its manifest and against what the API returns. */
    async function checkArchive(archive: Buffer, includeVersions: boolean) {
      const entries = await untar(archive);
      assert.equal(entries[0]!.name, 'manifest.json', 'the manifest comes first');
      const manifest = JSON.parse(entries[0]!.body.toString('utf8'));
      assert.equal(manifest.tenantId, t.tenantId);
      assert.equal(manifest.includeVersions, includeVersions);
      assert.ok(Number.isInteger(manifest.seq) && manifest.seq > 0, 'the sequence the read was taken at');
      assert.deepEqual(
        manifest.entries.map((e: { name: string; size: number; sha256: string }) => [e.name, e.size, e.sha256]),
        entries.slice(1).map((e) => [e.name, e.body.length, sha256(e.body)]),
        'the manifest lists every other entry, in order, with its size and SHA-256',
      );
      const byName = new Map(entries.map((e) => [e.name, e.body]));
      const api = await viaApi();
      for (const [collection, ids] of Object.entries(collections)) {
        assert.deepEqual(jsonLines(byName.get(`records/${collection}.jsonl`)!), api.records[collection], `records/${collection}.jsonl`);
        const history = byName.get(`versions/${collection}.jsonl`);
        if (!includeVersions) {
          assert.equal(history, undefined);
          continue;
        }
        const lines = jsonLines(history!);
        for (const id of ids) {
          const ofId = lines.filter((l) => l.id === id).map(({ id: _, ...v }) => v).reverse();
          assert.deepEqual(ofId, api.versions[collection]![id], `versions of ${collection}/${id}`);
        }
        assert.equal(lines.length, ids.reduce((n, id) => n + api.versions[collection]![id]!.length, 0));
      }
      assert.deepEqual(jsonLines(byName.get('records/notes.jsonl')!).map((r) => r.id).sort(), ['a', 'c'], 'a deleted record is not current');
      const fileEntries = entries.filter((e) => e.name.startsWith('files/'));
      assert.deepEqual(fileEntries.map((e) => e.name.slice('files/'.length)).sort(), [...api.files.keys()].sort());
      for (const [path, { view, bytes }] of api.files) {
        assert.ok(byName.get(`files/${path}`)!.equals(bytes), `files/${path}`);
        const listed = manifest.entries.find((e: { name: string }) => e.name === `files/${path}`);
        assert.deepEqual(listed.file, { path, version: view.version, contentType: view.contentType, createdAt: view.createdAt });
        assert.equal(listed.sha256, view.sha256);
      }
      const versionEntries = entries.filter((e) => e.name.startsWith('file-versions/'));
      if (includeVersions) {
        assert.deepEqual(versionEntries.map((e) => e.name.slice('file-versions/'.length)).sort(), [...api.fileVersions.keys()].sort());
        for (const [name, bytes] of api.fileVersions) assert.ok(byName.get(`file-versions/${name}`)!.equals(bytes), `file-versions/${name}`);
        assert.deepEqual(manifest.fileDeletions.map((d: { path: string; version: number }) => ({ path: d.path, version: d.version })), api.fileDeletions);
      } else {
        assert.deepEqual(versionEntries, []);
        assert.equal(manifest.fileDeletions, undefined);
      }
      assert.deepEqual(manifest.counts, {
        collections: 2,
        records: 4,
        recordVersions: includeVersions ? 3 + 2 + 3 + 1 + 2 : 0,
        files: 3,
        fileVersions: includeVersions ? api.fileVersions.size : 0,
      });
      return { manifest, entries, manifestBytes: entries[0]!.body };
    }

    test('the export archive of a tenant with records, versions and files matches its contents', async () => {
      const ready = await exportNow(true);
      assert.equal(ready.status, 'ready', ready.error);
      assert.equal(ready.includeVersions, true);
      assert.ok(ready.download.url.startsWith('https://'), 'a signed URL');
      const whole = await download(ready.download.url);
      assert.equal(whole.status, 200, whole.text);
      assert.equal(whole.headers['content-type'], 'application/x-tar');
      assert.equal(whole.bytes.length, ready.size);
      assert.equal(sha256(whole.bytes), ready.sha256, 'the archive is the one the status describes');
      const { manifestBytes } = await checkArchive(whole.bytes, true);
      assert.equal(sha256(manifestBytes), ready.manifestSha256);

      // Resumed: two ranged parts, concatenated, are the archive.
      const cut = Math.floor(ready.size / 3);
      const first = await download(ready.download.url, { range: `bytes=0-${cut - 1}` });
      const rest = await download(ready.download.url, { range: `bytes=${cut}-` });
      assert.equal(first.status, 206, first.text);
      assert.equal(rest.status, 206, rest.text);
      assert.equal(rest.headers['content-range'], `bytes ${cut}-${ready.size - 1}/${ready.size}`);
      assert.ok(Buffer.concat([first.bytes, rest.bytes]).equals(whole.bytes));
      assert.equal((await download(ready.download.url, { range: `bytes=${ready.size}-` })).status, 416);

      // At rest the archive is ciphertext under the tenant's key, under its exports/ prefix.
      const row = await h.core.db.reader.selectFrom('exports').selectAll().where('tenant_id', '=', t.tenantId).where('export_id', '=', ready.exportId).executeTakeFirstOrThrow();
      assert.ok(row.object_key!.startsWith(`exports/${t.tenantId}/${ready.exportId}`), row.object_key!);
      const stored: Buffer[] = [];
      for await (const chunk of await h.core.blobs.get(row.object_key!)) stored.push(chunk as Buffer);
      const blob = Buffer.concat(stored);
      assert.ok(blob.length > ready.size);
      for (const needle of [secret, fileSecret, 'manifest.json', 'records/notes.jsonl']) assert.equal(blob.indexOf(needle), -1, `no ${needle} in the stored object`);
      assert.equal(blob.indexOf(logo.subarray(1000, 1064)), -1, 'no file bytes in the stored object');

      const events = await h.core.db.reader.selectFrom('audit_events').select(['action', 'actor']).where('tenant_id', '=', t.tenantId).where('action', 'like', 'tenant.export%').orderBy('seq').execute();
      const actions = events.map((e) => e.action);
      for (const action of ['tenant.export', 'tenant.export_build', 'tenant.export_sign', 'tenant.export_download']) assert.ok(actions.includes(action), `${action} is audited`);
      assert.equal(actions.filter((a) => a === 'tenant.export_download').length, 3, 'every download, whole or ranged (the refused range read nothing)');
      assert.ok(events.filter((e) => e.action === 'tenant.export_download').every((e) => e.actor.startsWith('system:signed-url:')));
      assert.ok((await verifyAuditChain(h.core.db.reader, t.tenantId)).ok);
    });

    test('without versions, the archive holds the current records and files only', async () => {
      const ready = await exportNow(false);
      assert.equal(ready.status, 'ready', ready.error);
      const whole = await download(ready.download.url);
      assert.equal(whole.status, 200, whole.text);
      await checkArchive(whole.bytes, false);
    });

    test('the CLI writes the same archive from the data directory', async () => {
      const ready = await exportNow(true);
      const served = await untar((await download(ready.download.url)).bytes);
      const out = join(h.config.dataDir, 'cli-export.tar');
      const env = driver === 'postgres' ? postgresEnv(h.config.database.postgres.url!) : {};
      const res = await runCli(h.config.dataDir, ['tenant', 'export', '--tenant', t.tenantId, '--versions', '--out', out, '--json'], { env, timeoutMs: 60_000 });
      assert.equal(res.code, 0, res.stderr);
      const printed = JSON.parse(res.stdout);
      const file = readFileSync(out);
      assert.equal(sha256(file), printed.sha256);
      const written = await untar(file);
      assert.equal(sha256(written[0]!.body), printed.manifestSha256);
      // The same data; the manifests differ by their export id, time and sequence (the audit events of the download came between).
      assert.deepEqual(written.slice(1), served.slice(1));
      assert.ok(JSON.parse(written[0]!.body.toString()).seq > JSON.parse(served[0]!.body.toString()).seq);
      const again = await runCli(h.config.dataDir, ['tenant', 'export', '--tenant', t.tenantId, '--out', out], { env });
      assert.equal(again.code, 2, 'an existing file is never overwritten');
      assert.ok(readFileSync(out).equals(file));
    });

    test('a viewer, a read key, a foreign tenant and operators are refused; one export is built at a time', async () => {
      const path = `${base}/exports`;
      ok(await as(viewerToken(), 'POST', path, {}), 403);
      ok(await h.call('POST', path, { key: readKey, body: {} }), 403);
      ok(await h.call('POST', path, { key: other.apiKey, body: {} }), 404);
      ok(await as(oidc({ sub: 'sre-x', amr: ['pwd', 'otp'] }), 'POST', path, {}), 403);
      const support: Principal = { kind: 'operator', operatorId: operatorId(idp.issuer, 'support-x'), roles: ['support'], grant: null };
      const asked = await requestAccess(h.core, support, { requestId: 'test', sourceIp: 'local' }, t.tenantId, { reason: 'export test', ticket: 'X-1', scope: 'read-write', durationMinutes: 30, breakGlass: false });
      await approveAccessRequest(h.core, owner, { requestId: 'test', sourceIp: 'local' }, t.tenantId, asked.requestId);
      ok(await as(oidc({ sub: 'support-x', amr: ['pwd', 'otp'] }), 'POST', path, {}), 403);
      ok(await h.call('POST', path, { key: t.apiKey, body: { includeVersions: 'yes' } }), 400);
      ok(await h.call('GET', `${path}/x_aaaaaaaaaaaaaaaa`, { key: t.apiKey }), 404);
      ok(await h.call('GET', `${path}/not-an-id`, { key: t.apiKey }), 400);

      const first = await as(ownerToken(), 'POST', path, {});
      ok(first, 202);
      const second = await h.call('POST', path, { key: t.apiKey, body: {} });
      ok(second, 409);
      ok(await h.call('GET', `${path}/${first.json.exportId}`, { key: other.apiKey }), 404);
      ok(await as(viewerToken(), 'GET', `${path}/${first.json.exportId}`), 403);
      await settle();
    });

    test('a tampered or expired URL is refused, and an export past its retention is deleted', async () => {
      const ready = await exportNow(false);
      const path = new URL(ready.download.url).pathname;
      const token = path.split('/').pop()!;
      const parts = token.split('.');
      const tampered = [
        [...parts.slice(0, 2), `x_${'a'.repeat(16)}`, ...parts.slice(3)].join('.'),
        [...parts.slice(0, 3), String(Number(parts[3]) + 3600), ...parts.slice(4)].join('.'),
        [...parts.slice(0, -1), 'A'.repeat(43)].join('.'),
        [parts[0], other.tenantId, ...parts.slice(2)].join('.'),
        `v1${token.slice(2)}`,
      ];
      for (const forged of tampered) {
        const res = await h.call('GET', `/v1/signed/exports/${forged}`);
        assert.equal(res.status, 403, `${forged}: ${res.text}`);
        assert.equal(res.json.error.code, 'forbidden');
      }
      ok(await h.call('GET', path), 200);
      now += h.config.files.signedUrlMaxSeconds * 1000 + 1000;
      ok(await h.call('GET', path), 403);

      const fresh = await h.call('GET', `${base}/exports/${ready.exportId}`, { key: t.apiKey });
      ok(await download(fresh.json.download.url), 200);
      const row = await h.core.db.reader.selectFrom('exports').select('object_key').where('tenant_id', '=', t.tenantId).where('export_id', '=', ready.exportId).executeTakeFirstOrThrow();
      now += 8 * DAY;
      const overdue = await h.call('GET', `${base}/exports/${ready.exportId}`, { key: t.apiKey });
      assert.equal(overdue.json.download, null, 'no URL for an export past its expiry');
      // The server's own expiry job may have run already, now that the clock moved.
      await expireExports(h.core);
      assert.equal(await h.core.blobs.head(row.object_key!), null, 'the archive is deleted');
      const expired = await h.call('GET', `${base}/exports/${ready.exportId}`, { key: t.apiKey });
      assert.equal(expired.json.status, 'expired');
      const events = await h.core.db.reader.selectFrom('audit_events').select('action').where('tenant_id', '=', t.tenantId).where('action', '=', 'tenant.export_expire').execute();
      assert.ok(events.length >= 1);
    });

    test('a terminated tenant can still export', async () => {
      ok(await as(ownerToken(), 'POST', `${base}/termination`, { confirm: t.tenantId }), 200);
      ok(await h.call('PUT', `${base}/collections/notes/records/late`, { key: t.apiKey, body: { text: 'refused' } }), 403);
      const ready = await exportNow(true);
      assert.equal(ready.status, 'ready', ready.error);
      const whole = await download(ready.download.url);
      assert.equal(whole.status, 200, whole.text);
      await checkArchive(whole.bytes, true);
    });
  });
}
