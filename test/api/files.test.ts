import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SEGMENT_SIZE } from '../../src/crypto/stream-cipher.js';
import { databaseFiles, describeFound, filesUnder, marker, scanFiles } from '../support/disk-scan.js';
import { DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

after(stopPostgres);

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const encodePath = (path: string) => path.split('/').map(encodeURIComponent).join('/');

for (const driver of DRIVERS) {
  describe(`files API, on ${driver}`, () => {
    let h: Harness;
    let t: { tenantId: string; apiKey: string };
    let now = Date.parse('2026-11-29T12:00:00Z');
    const url = (path: string, kind = 'files') => `/v1/tenants/${t.tenantId}/${kind}/${encodePath(path)}`;
    const put = (path: string, data: Buffer | string, headers: Record<string, string> = {}) =>
      h.call('PUT', url(path), { key: t.apiKey, rawBody: data, headers: { 'content-type': 'text/plain; charset=utf-8', ...headers } });
    const get = (path: string, headers: Record<string, string> = {}, query = '') => h.call('GET', `${url(path)}${query}`, { key: t.apiKey, headers });
    // Files' objects only: the shipper writes change-log segments into the same store at any moment.
    const fileObjects = (root: string) => filesUnder(join(root, 'files'));
    const blobFiles = () => [...fileObjects(h.config.blobs.primary.path!), ...fileObjects(h.config.blobs.replica.path!)];

    before(async () => {
      h = await startHarness(driver, { now: () => now, env: { STRONGROOM_FILES__MAX_BYTES: String(1024 * 1024) } });
      t = await h.tenant('files');
    });
    after(() => h.close());

    test('a file round-trips with its type and digest, is stored on the primary and the replica, and is only ever an attachment', async () => {
      const secret = marker('file-body');
      const path = `reports/${marker('file-name')}.txt`;
      const body = `${secret}\n`.repeat(10);
      const created = await put(path, body, { 'content-sha256': sha256(body) });
      assert.equal(created.status, 201, created.text);
      assert.deepEqual({ ...created.json, createdAt: undefined }, { path, version: 1, size: body.length, contentType: 'text/plain; charset=utf-8', sha256: sha256(body), createdAt: undefined });
      const read = await get(path);
      assert.equal(read.status, 200, read.text);
      assert.equal(read.text, body);
      assert.equal(read.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(read.headers['content-sha256'], sha256(body));
      assert.equal(read.headers['content-disposition'], 'attachment');
      assert.match(String(read.headers['content-security-policy']), /^default-src 'none'/);
      const head = await h.call('HEAD', url(path), { key: t.apiKey });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(body.length));
      assert.equal(head.text, '');

      const primary = fileObjects(h.config.blobs.primary.path!);
      const replica = fileObjects(h.config.blobs.replica.path!);
      assert.equal(primary.length, 1);
      assert.equal(replica.length, 1);
      assert.deepEqual(readFileSync(primary[0]!), readFileSync(replica[0]!), 'the replica holds the same ciphertext');
      const scan = scanFiles([...blobFiles(), ...(await databaseFiles(h))], [secret, path, 'reports/']);
      assert.ok(scan.files > 2);
      assert.deepEqual(scan.found, new Map(), `plaintext at rest: ${describeFound(scan.found)}`);
    });

    test('a body that does not match its Content-SHA256, or a path that is not one, is refused and leaves nothing', async () => {
      const before = blobFiles().length;
      const wrong = await put('notes/a.txt', 'hello', { 'content-sha256': sha256('something else') });
      assert.equal(wrong.status, 400, wrong.text);
      assert.equal(wrong.json.error.code, 'bad_request');
      assert.equal((await get('notes/a.txt')).status, 404);
      // Slashes encoded, or the client's URL parser would resolve the dots before the server sees them.
      for (const bad of ['a/../b', 'a//b', './a', 'a/.']) {
        const res = await h.call('PUT', `/v1/tenants/${t.tenantId}/files/${encodeURIComponent(bad)}`, { key: t.apiKey, rawBody: 'x', headers: { 'content-type': 'text/plain' } });
        assert.equal(res.status, 400, `${bad}: ${res.status}`);
      }
      assert.equal((await put('bad\u0001name', 'x')).status, 400);
      assert.equal((await put('ok.txt', 'x', { 'content-type': 'not a type' })).status, 415);
      const tooBig = await put('big/too-big.bin', Buffer.alloc(1024 * 1024 + 1), { 'content-type': 'application/octet-stream' });
      assert.equal(tooBig.status, 413, tooBig.text);
      assert.equal(tooBig.json.error.code, 'payload_too_large');
      assert.equal(blobFiles().length, before, 'no blob was left behind');
    });

    test('range reads at segment boundaries return exactly the bytes asked for', async () => {
      const data = randomBytes(3 * SEGMENT_SIZE + 1000);
      assert.equal((await put('big/ranged.bin', data, { 'content-type': 'application/octet-stream' })).status, 201);
      const cases: [string, number, number][] = [
        ['bytes=0-0', 0, 0],
        [`bytes=${SEGMENT_SIZE - 1}-${SEGMENT_SIZE}`, SEGMENT_SIZE - 1, SEGMENT_SIZE],
        [`bytes=${SEGMENT_SIZE}-${2 * SEGMENT_SIZE - 1}`, SEGMENT_SIZE, 2 * SEGMENT_SIZE - 1],
        [`bytes=${2 * SEGMENT_SIZE + 5}-`, 2 * SEGMENT_SIZE + 5, data.length - 1],
        ['bytes=-10', data.length - 10, data.length - 1],
        [`bytes=10-${data.length + 500}`, 10, data.length - 1],
      ];
      for (const [range, start, end] of cases) {
        const res = await get('big/ranged.bin', { range });
        assert.equal(res.status, 206, `${range}: ${res.text}`);
        assert.equal(res.headers['content-range'], `bytes ${start}-${end}/${data.length}`);
        assert.deepEqual(res.bytes, data.subarray(start, end + 1), range);
      }
      assert.equal((await get('big/ranged.bin', { range: `bytes=${data.length}-` })).status, 416);
      assert.equal((await get('big/ranged.bin', { range: 'bytes=5-2' })).status, 416);
      assert.equal((await get('big/ranged.bin', { range: 'bytes=0-1,5-6' })).status, 400);
      assert.deepEqual((await get('big/ranged.bin')).bytes, data);
    });

    test('overwrite keeps the old version; delete is a tombstone; versions list, read and restore (undelete)', async () => {
      assert.equal((await put('docs/v.txt', 'one')).json.version, 1);
      assert.equal((await put('docs/v.txt', 'two')).json.version, 2);
      assert.equal((await get('docs/v.txt')).text, 'two');
      assert.equal((await get('docs/v.txt', {}, '?version=1')).text, 'one');
      assert.equal((await h.call('DELETE', url('docs/v.txt'), { key: t.apiKey })).status, 204);
      assert.equal((await get('docs/v.txt')).status, 404);
      assert.equal((await h.call('DELETE', url('docs/v.txt'), { key: t.apiKey })).status, 404, 'deleting a deleted file');
      assert.equal((await get('docs/v.txt', {}, '?version=2')).text, 'two', 'old versions stay readable after a delete');
      const versions = await h.call('GET', url('docs/v.txt', 'file-versions'), { key: t.apiKey });
      assert.deepEqual((versions.json.versions as { version: number; op: string }[]).map((v) => [v.version, v.op]), [[3, 'delete'], [2, 'put'], [1, 'put']]);
      const undeleted = await h.call('POST', url('docs/v.txt', 'file-versions'), { key: t.apiKey, body: {} });
      assert.equal(undeleted.status, 201, undeleted.text);
      assert.equal(undeleted.json.version, 4);
      assert.equal((await get('docs/v.txt')).text, 'two', 'undelete brings back the newest content');
      const rolledBack = await h.call('POST', url('docs/v.txt', 'file-versions'), { key: t.apiKey, body: { version: 1 } });
      assert.equal(rolledBack.json.version, 5);
      assert.equal((await get('docs/v.txt')).text, 'one');
      assert.equal((await h.call('POST', url('docs/v.txt', 'file-versions'), { key: t.apiKey, body: { version: 3 } })).status, 404, 'a tombstone holds nothing to restore');
    });

    test('listing by prefix finds files through folder tokens and pages with a cursor', async () => {
      for (const path of ['tree/a/1.txt', 'tree/a/2.txt', 'tree/b.txt', 'tree/a/deep/3.txt', 'treetop.txt']) assert.equal((await put(path, path)).status, 201);
      const list = async (prefix: string, extra = '') => {
        const res = await h.call('GET', `/v1/tenants/${t.tenantId}/files?prefix=${encodeURIComponent(prefix)}${extra}`, { key: t.apiKey });
        assert.equal(res.status, 200, res.text);
        return res.json as { files: { path: string }[]; nextCursor: string | null };
      };
      const paths = async (prefix: string) => (await list(prefix)).files.map((f) => f.path).sort();
      assert.deepEqual(await paths('tree/a/'), ['tree/a/1.txt', 'tree/a/2.txt', 'tree/a/deep/3.txt']);
      assert.deepEqual(await paths('tree/a/1'), ['tree/a/1.txt']);
      assert.deepEqual(await paths('tree/'), ['tree/a/1.txt', 'tree/a/2.txt', 'tree/a/deep/3.txt', 'tree/b.txt']);
      assert.deepEqual(await paths('tree'), ['tree/a/1.txt', 'tree/a/2.txt', 'tree/a/deep/3.txt', 'tree/b.txt', 'treetop.txt']);
      const seen: string[] = [];
      let cursor = '';
      for (let pages = 0; pages < 10; pages += 1) {
        const page = await list('tree/', `&limit=3${cursor ? `&cursor=${cursor}` : ''}`);
        seen.push(...page.files.map((f) => f.path));
        if (!page.nextCursor) break;
        cursor = page.nextCursor;
      }
      assert.deepEqual(seen.sort(), ['tree/a/1.txt', 'tree/a/2.txt', 'tree/a/deep/3.txt', 'tree/b.txt'], 'pages cover every file once');
      assert.equal((await h.call('GET', `/v1/tenants/${t.tenantId}/files?prefix=a/../b`, { key: t.apiKey })).status, 400);
    });

    test('signed URLs download without credentials; expired, tampered, foreign, reused or wrong-method URLs get 403', async () => {
      assert.equal((await put('share/s.txt', 'shared bytes')).status, 201);
      const sign = async (body: object) => {
        const res = await h.call('POST', url('share/s.txt', 'signed-urls'), { key: t.apiKey, body });
        assert.equal(res.status, 201, res.text);
        return new URL(res.json.url as string).pathname;
      };
      const plain = await sign({ expiresInSeconds: 60 });
      assert.equal((await h.call('GET', plain)).text, 'shared bytes');
      assert.equal((await h.call('GET', plain)).status, 200, 'reusable unless single-use');
      const tampered = plain.replace(/\.(\d+)\.GET\./, (_, v: string) => `.${Number(v) + 1}.GET.`);
      assert.equal((await h.call('GET', tampered)).status, 403);
      const other = await h.tenant('files-other');
      assert.equal((await h.call('GET', plain.replace(t.tenantId, other.tenantId))).status, 403, "another tenant's id");
      assert.equal((await h.call('DELETE', plain)).status, 404, 'only GET is routed');

      const once = await sign({ singleUse: true });
      assert.equal((await h.call('GET', once)).status, 200);
      const reused = await h.call('GET', once);
      assert.equal(reused.status, 403);
      assert.equal(reused.json.error.code, 'forbidden');

      const short = await sign({ expiresInSeconds: 30 });
      now += 31_000;
      assert.equal((await h.call('GET', short)).status, 403, 'expired');
      assert.equal((await h.call('POST', url('share/s.txt', 'signed-urls'), { key: t.apiKey, body: { expiresInSeconds: 301 } })).status, 400, 'at most 5 minutes');

      const audit = await h.call('GET', `/v1/tenants/${t.tenantId}/audit?limit=1000`, { key: t.apiKey });
      const events = audit.json.events as { action: string; actor: string; target: string }[];
      assert.ok(events.some((e) => e.action === 'file.sign' && e.target.startsWith('file:share/s.txt v1 until:')));
      assert.ok(events.some((e) => e.action === 'file.get' && e.actor.startsWith('system:signed-url:') && e.target === 'file:share/s.txt v1'));
    });

    test('tampered ciphertext is never served: a flipped byte, a truncation or two swapped blobs fail with an integrity error', async () => {
      const fresh = (label: string) => put(`tamper/${label}.txt`, `${label} `.repeat(50));
      const blobsOf = async (label: string) => {
        const before = new Set(blobFiles());
        assert.equal((await fresh(label)).status, 201);
        return blobFiles().filter((f) => !before.has(f));
      };
      const expectIntegrity = async (label: string) => {
        const res = await get(`tamper/${label}.txt`);
        assert.equal(res.status, 500, `${label}: ${res.status} ${res.text.slice(0, 80)}`);
        assert.equal(res.json.error.code, 'integrity');
      };
      for (const file of await blobsOf('flip')) {
        const bytes = readFileSync(file);
        bytes[bytes.length - 20]! ^= 0x01;
        writeFileSync(file, bytes);
      }
      await expectIntegrity('flip');
      for (const file of await blobsOf('cut')) writeFileSync(file, readFileSync(file).subarray(0, -1));
      await expectIntegrity('cut');
      const [a1, a2] = await blobsOf('swap-a');
      const [b1, b2] = await blobsOf('swap-b');
      const [x, y] = [readFileSync(a1!), readFileSync(b1!)];
      for (const [file, bytes] of [[a1!, y], [a2!, y], [b1!, x], [b2!, x]] as const) writeFileSync(file, bytes);
      await expectIntegrity('swap-a');
      await expectIntegrity('swap-b');
    });
  });
}
