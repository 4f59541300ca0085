/**
 * KMS benchmark (issue 4), all in one process and one run so the figures compare:
 *   1. unwrap operations per second, local provider vs PKCS#11 on a throwaway SoftHSM2 token;
 *   2. records written per second through the secure write path (core putRecord: keyring, record
 *      cipher, group commit, audit) with each provider, over many tenants, with the data-key cache
 *      as configured (warm) and with a cache too small to hold the tenants (every write unwraps);
 *   3. the keyring's hit rate in each of those runs.
 *
 * Usage: npm run build && node dist/bench/kms.js [--seconds 5] [--concurrency 32] [--tenants 200]
 * Exits 1 on any failed operation.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { prepareDataDir } from '../src/cli/runtime.js';
import { loadConfig } from '../src/config/load.js';
import { openCore } from '../src/core/open-core.js';
import { declareCollection } from '../src/core/collections.js';
import { putRecord } from '../src/core/records.js';
import { createTenant } from '../src/core/tenants.js';
import type { Principal } from '../src/core/context.js';
import type { Kms } from '../src/kms/kms.js';
import { createSoftHsmToken, type SoftHsmToken } from '../test/support/softhsm.js';

const say = (text: string) => process.stdout.write(`${text}\n`);
const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '32' }, tenants: { type: 'string', default: '200' } } });
const [seconds, concurrency, tenantCount] = [values.seconds, values.concurrency, values.tenants].map(Number) as [number, number, number];
const META = { requestId: 'bench', sourceIp: 'local' };

/** Runs `op` from `concurrency` loops for `seconds`; returns completed operations per second. */
async function rate(op: (i: number) => Promise<void>): Promise<number> {
  const stopAt = Date.now() + seconds * 1000;
  let done = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, loop) => {
      for (let i = loop; Date.now() < stopAt; i += concurrency) {
        await op(i);
        done += 1;
      }
    }),
  );
  return done / ((Date.now() - started) / 1000);
}

async function unwrapRate(kms: Kms): Promise<number> {
  const name = `bench.unwrap-${randomBytes(4).toString('hex')}`;
  await kms.createKey(name);
  const aad = Buffer.from('bench');
  const wrapped = await kms.wrapKey(name, randomBytes(32), aad);
  return rate(async () => {
    (await kms.unwrapKey(name, wrapped, aad)).fill(0);
  });
}

interface WriteFigures {
  recordsPerSecond: number;
  hitRate: number;
  unwraps: number;
}

async function writeRate(provider: 'local' | 'pkcs11', token: SoftHsmToken, cacheEntries: number): Promise<{ figures: WriteFigures; unwrapPerSecond: number }> {
  const dataDir = mkdtempSync(join(os.tmpdir(), 'strongroom-bench-kms-'));
  const env: Record<string, string> = { STRONGROOM_KEYS__DATA_KEY_CACHE_ENTRIES: String(cacheEntries), STRONGROOM_KMS__PROVIDER: provider };
  if (provider === 'pkcs11') Object.assign(env, { STRONGROOM_KMS__PKCS11__LIBRARY: token.library, STRONGROOM_KMS__PKCS11__TOKEN_LABEL: token.tokenLabel, STRONGROOM_KMS__PKCS11__PIN: token.pin });
  const config = loadConfig({ env, overrides: { dataDir } });
  await prepareDataDir(config);
  const core = await openCore(config);
  try {
    const unwrapPerSecond = await unwrapRate(core.kms);
    const tenants: { tenantId: string; principal: Principal }[] = [];
    for (let i = 0; i < tenantCount; i += 1) {
      const t = await createTenant(core, { kind: 'system', name: 'bench' }, META, `bench ${i}`);
      const principal: Principal = { kind: 'api_key', tenantId: t.tenantId, keyId: t.apiKeyId, scopes: ['admin'] };
      await declareCollection(core, principal, META, t.tenantId, 'notes', []);
      tenants.push({ tenantId: t.tenantId, principal });
    }
    core.keyring.clear();
    const before = { ...core.keyring.stats };
    const body = { text: randomBytes(384).toString('base64') };
    const recordsPerSecond = await rate(async (i) => {
      const t = tenants[i % tenants.length]!;
      await putRecord(core, t.principal, META, { tenantId: t.tenantId, collection: 'notes', id: `r${i}` }, body, {});
    });
    const hits = core.keyring.stats.hits - before.hits;
    const misses = core.keyring.stats.misses - before.misses;
    return { figures: { recordsPerSecond, hitRate: hits / Math.max(1, hits + misses), unwraps: misses }, unwrapPerSecond };
  } finally {
    await core.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const token = await createSoftHsmToken();
let failed = false;
try {
  say(`KMS benchmark: ${seconds} s per run, ${concurrency} concurrent operations, ${tenantCount} tenants; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}`);
  say('| provider | unwraps/s | records/s, warm cache | hit rate | records/s, cache of 8 keys | hit rate | KMS unwraps |');
  say('|---|---|---|---|---|---|---|');
  for (const provider of ['local', 'pkcs11'] as const) {
    const warm = await writeRate(provider, token, 10_000);
    const cold = await writeRate(provider, token, 8);
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    say(`| ${provider} | ${warm.unwrapPerSecond.toFixed(0)} | ${warm.figures.recordsPerSecond.toFixed(0)} | ${pct(warm.figures.hitRate)} | ${cold.figures.recordsPerSecond.toFixed(0)} | ${pct(cold.figures.hitRate)} | ${cold.figures.unwraps} |`);
  }
} catch (error) {
  failed = true;
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
} finally {
  await token.remove();
}
process.exitCode = failed ? 1 : 0;
