/**
 * Files benchmark (issue 5): upload and download MiB/s of a 64 MiB file through the HTTPS API of
 * the embedded default (encryption, a primary and a replica folder, each fsynced), against a plain
 * stream copy of the same bytes (with and without fsync) in the same run; then the server's peak
 * RSS while it uploads and downloads a 1 GiB file.
 *
 * Usage: npm run bench:files [-- --size-mib 64 --big-mib 1024 --rounds 3]
 *
 * Every transfer is checked by SHA-256; a mismatch exits 1. Targets are printed, not enforced.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, fsyncSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { createTenantWithCli } from './support/cli-tenant.js';
import { temporaryDataDir } from './support/lifecycle.js';
import { killAllServers, startServerProcess } from './support/server-process.js';

const say = (text: string) => process.stdout.write(`${text}\n`);
const MIB = 1024 * 1024;
const here = dirname(fileURLToPath(import.meta.url));
const CLI = resolve(here, '../src/cli/main.js');

const { values } = parseArgs({ options: { 'size-mib': { type: 'string', default: '64' }, 'big-mib': { type: 'string', default: '1024' }, rounds: { type: 'string', default: '3' } } });
const sizeMib = Number(values['size-mib']);
const bigMib = Number(values['big-mib']);
const rounds = Number(values.rounds);

const { dir: dataDir } = temporaryDataDir('strongroom-bench-files-', killAllServers);

/** A file of random bytes (written in 1 MiB blocks, so this process stays small); returns its SHA-256. */
function makeFile(path: string, mib: number): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'w', 0o600);
  for (let i = 0; i < mib; i += 1) {
    const block = randomBytes(MIB);
    hash.update(block);
    writeSync(fd, block);
  }
  closeSync(fd);
  return hash.digest('hex');
}

/** Hashes what streams past. */
function hashing() {
  const hash = createHash('sha256');
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  return { stream, digest: () => hash.digest('hex') };
}

async function timed(run: () => Promise<void>): Promise<number> {
  const started = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** The baseline: a plain stream copy of the file, optionally fsynced, as `cp` then `sync` would. */
async function streamCopy(source: string, target: string, sync: boolean): Promise<void> {
  await pipeline(createReadStream(source, { highWaterMark: MIB }), createWriteStream(target));
  if (sync) {
    const fd = openSync(target, 'r');
    fsyncSync(fd);
    closeSync(fd);
  }
  rmSync(target);
}

const best = (seconds: number[]) => Math.min(...seconds);
const rate = (mib: number, seconds: number) => `${(mib / seconds).toFixed(1)} MiB/s`;

async function main(): Promise<void> {
  const { tenantId, apiKey } = await createTenantWithCli(CLI, dataDir, 'bench');
  const server = await startServerProcess('strongroom', [CLI, '--data-dir', dataDir, 'serve', '--port', '0'], join(dataDir, 'server.log'));
  const ca = readFileSync(join(dataDir, 'tls', 'ca-cert.pem'));
  const dispatcher = new Agent({ connect: { ca, servername: 'localhost' }, bodyTimeout: 600_000, headersTimeout: 600_000 });
  const base = `https://127.0.0.1:${server.port}/v1/tenants/${tenantId}/files`;
  const headers = { authorization: `Bearer ${apiKey}` };

  const upload = async (path: string, file: string, sha256: string) => {
    const res = await request(`${base}/${path}`, { method: 'PUT', dispatcher, headers: { ...headers, 'content-type': 'application/octet-stream', 'content-sha256': sha256 }, body: createReadStream(file, { highWaterMark: MIB }) });
    const text = await res.body.text();
    if (res.statusCode !== 201) throw new Error(`upload: ${res.statusCode} ${text}`);
  };
  const download = async (path: string, sha256: string) => {
    const res = await request(`${base}/${path}`, { dispatcher, headers });
    const check = hashing();
    await pipeline(res.body, check.stream, new Writable({ write: (_chunk, _encoding, done) => done() }));
    if (res.statusCode !== 200 || check.digest() !== sha256) throw new Error(`download of ${path}: ${res.statusCode}, digest ${check.digest()} instead of ${sha256}`);
  };

  const source = join(dataDir, 'source.bin');
  const digest = makeFile(source, sizeMib);
  const copy = { plain: [] as number[], synced: [] as number[], twice: [] as number[], up: [] as number[], down: [] as number[] };
  for (let i = 0; i < rounds; i += 1) {
    copy.plain.push(await timed(() => streamCopy(source, join(dataDir, 'copy.bin'), false)));
    copy.synced.push(await timed(() => streamCopy(source, join(dataDir, 'copy.bin'), true)));
    copy.twice.push(await timed(async () => void (await Promise.all([streamCopy(source, join(dataDir, 'copy-a.bin'), true), streamCopy(source, join(dataDir, 'copy-b.bin'), true)]))));
    copy.up.push(await timed(() => upload(`bench/f${i}.bin`, source, digest)));
    copy.down.push(await timed(() => download(`bench/f${i}.bin`, digest)));
  }
  rmSync(source);
  say(`files benchmark: ${sizeMib} MiB file, best of ${rounds}, Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}`);
  say(`  stream copy (no fsync)        ${rate(sizeMib, best(copy.plain))}`);
  say(`  stream copy + fsync           ${rate(sizeMib, best(copy.synced))}`);
  say(`  two copies + fsync at once    ${rate(sizeMib, best(copy.twice))}  (what a replicated upload writes)`);
  say(`  upload (encrypt, 2 copies)    ${rate(sizeMib, best(copy.up))}  = ${((best(copy.synced) / best(copy.up)) * 100).toFixed(0)}% of copy + fsync, ${((best(copy.twice) / best(copy.up)) * 100).toFixed(0)}% of two copies + fsync (target ≥ 50%)`);
  say(`  download (decrypt, verify)    ${rate(sizeMib, best(copy.down))}  = ${((best(copy.plain) / best(copy.down)) * 100).toFixed(0)}% of the plain copy (target ≥ 50%)`);

  const big = join(dataDir, 'big.bin');
  const bigDigest = makeFile(big, bigMib);
  const before = server.peakRssBytes();
  const bigUp = await timed(() => upload('bench/big.bin', big, bigDigest));
  rmSync(big);
  const bigDown = await timed(() => download('bench/big.bin', bigDigest));
  const peak = server.peakRssBytes();
  say(`  ${bigMib} MiB file: upload ${rate(bigMib, bigUp)}, download ${rate(bigMib, bigDown)}; server peak RSS ${peak === null ? '?' : (peak / MIB).toFixed(0)} MiB (before: ${before === null ? '?' : (before / MIB).toFixed(0)} MiB; target < 150 MB)`);
  await dispatcher.close();
  await server.stop();
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
