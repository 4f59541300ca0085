import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { runCli, spawnServer, tempDirs } from '../support/cli-process.js';

const tempDir = tempDirs('strongroom-large-file-');
const MIB = 1024 * 1024;
const SIZE_MIB = 1024;

/** A 1 GiB body made on the fly from a random 1 MiB block with a counter, so neither side holds it. */
function body(hash: ReturnType<typeof createHash>): Readable {
  const block = randomBytes(MIB);
  return Readable.from(
    (function* () {
      for (let i = 0; i < SIZE_MIB; i += 1) {
        const chunk = Buffer.from(block);
        chunk.writeUInt32BE(i, 0);
        hash.update(chunk);
        yield chunk;
      }
    })(),
  );
}

/** The server's resident set size, from /proc. */
const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;

test('a 1 GiB file goes up and comes back whole (SHA-256 compared), the server memory staying flat, and a range at the far end reads', async (t) => {
  const dir = tempDir();
  const created = await runCli(dir, ['tenant', 'create', 'large', '--json']);
  assert.equal(created.code, 0, created.stderr);
  const { tenantId, apiKey } = JSON.parse(created.stdout) as { tenantId: string; apiKey: string };
  const server = await spawnServer(dir);
  const dispatcher = new Agent({ connect: { ca: readFileSync(join(dir, 'tls', 'ca-cert.pem')), servername: 'localhost' }, bodyTimeout: 600_000, headersTimeout: 600_000 });
  const pid = server.child.pid!;
  const samples: number[] = [];
  const sampler = setInterval(() => samples.push(rssOf(pid)), 100);
  try {
    const idle = rssOf(pid);
    const url = `${server.url}/v1/tenants/${tenantId}/files/large/one.bin`;
    const auth = { authorization: `Bearer ${apiKey}` };
    const sent = createHash('sha256');
    const up = await request(url, { method: 'PUT', dispatcher, headers: { ...auth, 'content-type': 'application/octet-stream' }, body: body(sent) });
    assert.equal(up.statusCode, 201, await up.body.text());
    const sentDigest = sent.digest('hex');

    const got = createHash('sha256');
    const down = await request(url, { dispatcher, headers: auth });
    assert.equal(down.statusCode, 200);
    assert.equal(down.headers['content-length'], String(SIZE_MIB * MIB));
    await pipeline(down.body, new Writable({
        write(chunk: Buffer, _encoding, done) {
          got.update(chunk);
          done();
        },
      }));
    assert.equal(got.digest('hex'), sentDigest, 'the bytes that came back are the bytes sent');

    const tail = await request(url, { dispatcher, headers: { ...auth, range: `bytes=${SIZE_MIB * MIB - 5}-` } });
    assert.equal(tail.statusCode, 206);
    assert.equal((await tail.body.arrayBuffer()).byteLength, 5);

    const peak = Math.max(...samples);
    // Loose on purpose (a garbage collector decides when to give memory back): a server that buffered
    // the file would grow by a gigabyte, not by tens of megabytes.
    assert.ok(peak - idle < 128 * MIB, `RSS grew from ${(idle / MIB).toFixed(0)} MiB to ${(peak / MIB).toFixed(0)} MiB while moving 1 GiB each way`);
    t.diagnostic(`server RSS: idle ${(idle / MIB).toFixed(0)} MiB, peak ${(peak / MIB).toFixed(0)} MiB over ${samples.length} samples`);
  } finally {
    clearInterval(sampler);
    await dispatcher.close();
    await server.stop();
  }
});
