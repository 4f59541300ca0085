/**
 * Records benchmark (issue 2): secure writes/s and audited reads/s of the embedded default
 * (SQLite, local KMS, local-CA TLS), against a bare baseline with the same TLS, Fastify, durability
 * and group commit; prints both, the "security tax" (baseline ops/s / secure ops/s) and the targets.
 *
 * Usage: npm run bench [-- --duration 10 --connections 64 --record-bytes 1024]
 *        node dist/bench/records.js --writes-only --cpu-prof-dir /tmp/prof   (profiles both servers)
 *
 * Exits 1 if any request got something other than a verified 2xx, or an error; target misses are
 * printed, not failed. The load generator (autocannon) runs in this process, on the same machine.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import SQLite from 'better-sqlite3';
import { Agent, request } from 'undici';
import { badResponses, comparisonTable, cpuTable, failuresTable, interferenceWarning, memoryLine, targetLines, type ServerFigures } from './support/report.js';
import { createTenantWithCli } from './support/cli-tenant.js';
import { aesGcmRate, fsyncRate, machineBusySeconds, machineLine } from './support/machine.js';
import { killAllServers, startServerProcess, type ServerProcess } from './support/server-process.js';
import { flagsOrUsage, positiveInt, runBenchmark, temporaryDataDir } from './support/lifecycle.js';
import { readWorkload, recordBody, stopActiveLoad, writeWorkload, type LoadSettings, type WorkloadResult } from './support/workloads.js';

const say = (text: string) => process.stdout.write(`${text}\n`);
const warn = (text: string) => process.stderr.write(`${text}\n`);

const here = dirname(fileURLToPath(import.meta.url));
const CLI = resolve(here, '../src/cli/main.js');
const BASELINE = resolve(here, 'baseline-server.js');
const SERVERNAME = 'localhost';
const COLLECTION = 'bench';
const ID_PREFIX = 'r';

const USAGE = 'usage: node dist/bench/records.js [--duration SECONDS] [--connections N] [--record-bytes N] [--writes-only] [--cpu-prof-dir DIR]';

function parseFlags() {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '64' },
      'record-bytes': { type: 'string', default: '1024' },
      'writes-only': { type: 'boolean', default: false },
      'cpu-prof-dir': { type: 'string' },
    },
  });
  return {
    durationSeconds: positiveInt('duration', values.duration),
    connections: positiveInt('connections', values.connections),
    recordBytes: positiveInt('record-bytes', values['record-bytes']),
    writesOnly: values['writes-only'],
    profileDir: values['cpu-prof-dir'] ? resolve(values['cpu-prof-dir']) : undefined,
  };
}

const flags = flagsOrUsage(parseFlags, USAGE);
const { durationSeconds, connections, recordBytes, profileDir } = flags;
const nodeFlags = (name: string) => (profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`] : []);

/** Removed on every way out, after the load and the servers are stopped. */
const { dir: dataDir, cleanup } = temporaryDataDir('strongroom-bench-', () => {
  stopActiveLoad();
  killAllServers();
});

/** A fully verified TLS connection (CA and host name), to learn what the load will negotiate. */
function negotiatedTls(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolveTls, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, servername: SERVERNAME }, () => {
      const cipher = socket.getCipher();
      resolveTls(`${socket.getProtocol() ?? '?'} ${cipher.standardName}`);
      socket.end();
    });
    socket.once('error', reject);
  });
}

interface Target {
  origin: string;
  dispatcher: Agent;
  headers: Record<string, string>;
  recordsPath: string;
}

async function call(target: Target, method: 'GET' | 'PUT', path: string, body?: string): Promise<{ status: number; json: unknown }> {
  const headers = body === undefined ? target.headers : { ...target.headers, 'content-type': 'application/json' };
  const res = await request(`${target.origin}${path}`, { method, headers, body, dispatcher: target.dispatcher });
  const text = await res.body.text();
  return { status: res.statusCode, json: text ? (JSON.parse(text) as unknown) : undefined };
}

/** One PUT and one GET through a verified TLS client: the routes work and round-trip a record. */
async function probe(name: string, target: Target): Promise<void> {
  const body = recordBody(0, recordBytes);
  const put = await call(target, 'PUT', `${target.recordsPath}/probe`, body);
  if (put.status !== 201) throw new Error(`${name}: probe PUT answered ${put.status}: ${JSON.stringify(put.json)}`);
  const got = await call(target, 'GET', `${target.recordsPath}/probe`);
  const data = (got.json as { data?: unknown } | undefined)?.data;
  if (got.status !== 200 || JSON.stringify(data) !== body) {
    throw new Error(`${name}: probe GET answered ${got.status} with a different record`);
  }
}

async function measure(server: ServerProcess, target: Target, ca: Buffer): Promise<ServerFigures> {
  const settings: LoadSettings = {
    origin: `https://127.0.0.1:${server.port}`,
    servername: SERVERNAME,
    ca,
    connections,
    durationSeconds,
    recordBytes,
    recordsPath: target.recordsPath,
    headers: target.headers,
  };
  say(`${server.name}: write workload, ${durationSeconds} s …`);
  const { result: write, writtenIds } = await observed(server, () => writeWorkload(settings, ID_PREFIX));
  say(`${server.name}: ${write.ok.toLocaleString('en-US')} writes acknowledged`);
  if (flags.writesOnly) return { write, read: null, peakRssBytes: server.peakRssBytes() };
  say(`${server.name}: read workload, ${durationSeconds} s …`);
  const { result: read } = await observed(server, async () => ({ result: await readWorkload(settings, writtenIds) }));
  return { write, read, peakRssBytes: server.peakRssBytes() };
}

/** Runs a workload and notes the CPU both sides used and how loaded the machine was. */
async function observed<T extends { result: WorkloadResult }>(server: ServerProcess, run: () => Promise<T>): Promise<T> {
  const machineBefore = machineBusySeconds();
  const serverBefore = server.cpuSeconds();
  const selfBefore = process.cpuUsage();
  const outcome = await run();
  const self = process.cpuUsage(selfBefore);
  const serverAfter = server.cpuSeconds();
  const machineAfter = machineBusySeconds();
  const selfSeconds = (self.user + self.system) / 1e6;
  const serverSeconds = serverBefore === null || serverAfter === null ? null : serverAfter - serverBefore;
  outcome.result.conditions = {
    serverCpuSeconds: serverSeconds,
    loadGeneratorCpuSeconds: selfSeconds,
    otherCpuSeconds:
      machineBefore === null || machineAfter === null || serverSeconds === null
        ? null
        : Math.max(0, machineAfter - machineBefore - serverSeconds - selfSeconds),
  };
  return outcome;
}

async function stopServer(server: ServerProcess): Promise<void> {
  const how = await server.stop();
  say(`${server.name}: stopped with SIGINT (${how})`);
  if (how !== 'exit code 0') throw new Error(`${server.name} did not shut down cleanly on SIGINT (${how}); see ${server.logFile}`);
}

/** What the secure server's audit log and tables hold after the run: proof the work was done. */
function secureEvidence(figures: ServerFigures): { lines: string[]; ok: boolean } {
  const db = new SQLite(join(dataDir, 'strongroom.db'), { readonly: true });
  try {
    const count = (action: string) =>
      (db.prepare("SELECT count(*) AS n FROM audit_events WHERE action = ? AND result = 'ok'").get(action) as { n: number }).n;
    const rows = (table: string) => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    const puts = count('record.put');
    const gets = count('record.get');
    const ok = puts >= figures.write.ok && gets >= (figures.read?.ok ?? 0);
    return {
      ok,
      lines: [
        `audit events (ok): record.put ${puts.toLocaleString('en-US')}, record.get ${gets.toLocaleString('en-US')} ` +
          `(≥ acknowledged writes ${figures.write.ok.toLocaleString('en-US')} and reads ${(figures.read?.ok ?? 0).toLocaleString('en-US')}: ${ok ? 'yes' : 'NO'})`,
        `rows: records ${rows('records')}, record_versions ${rows('record_versions')}, record_index ${rows('record_index')}, audit_events ${rows('audit_events')}`,
      ],
    };
  } finally {
    db.close();
  }
}

async function main(): Promise<number> {
  say('Strongroom records benchmark');
  say(`machine: ${machineLine()}`);
  say(
    `settings: ${connections} keep-alive HTTPS connections, ${durationSeconds} s per workload, ${recordBytes}-byte JSON records (one indexed field), ` +
      'embedded default (SQLite WAL synchronous=FULL, group commit, local KMS, local-CA TLS), autocannon in this process',
  );
  say(
    `machine speed: AES-256-GCM 1 KiB ${Math.round(aesGcmRate()).toLocaleString('en-US')}/s on one core (DESIGN.md: ~195k/s); ` +
      `fdatasync (4 KiB) in the data dir ${Math.round(fsyncRate(dataDir)).toLocaleString('en-US')}/s; loadavg ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  );
  say(`data dir: ${dataDir} (removed at exit)${profileDir ? `; CPU profiles: ${profileDir}` : ''}\n`);

  const { tenantId, apiKey } = await createTenantWithCli(CLI, dataDir, 'bench');
  const secure = await startServerProcess('secure', [...nodeFlags('secure'), CLI, '--data-dir', dataDir, 'serve', '--port', '0'], join(dataDir, 'secure.log'));
  const ca = readFileSync(join(dataDir, 'tls', 'ca-cert.pem'));
  const tls = await negotiatedTls(secure.port, ca);
  const dispatcher = new Agent({ connect: { ca, servername: SERVERNAME } });
  const secureTarget: Target = {
    origin: `https://127.0.0.1:${secure.port}`,
    dispatcher,
    headers: { authorization: `Bearer ${apiKey}` },
    recordsPath: `/v1/tenants/${tenantId}/collections/${COLLECTION}/records`,
  };
  const declared = await call(secureTarget, 'PUT', `/v1/tenants/${tenantId}/collections/${COLLECTION}`, JSON.stringify({ indexes: [{ field: 'email' }] }));
  if (declared.status !== 201) throw new Error(`declaring the collection answered ${declared.status}: ${JSON.stringify(declared.json)}`);
  await probe('secure', secureTarget);
  say(`secure: pid ${secure.pid}, port ${secure.port}, TLS ${tls}`);
  const secureFigures = await measure(secure, secureTarget, ca);
  await stopServer(secure);
  const evidence = secureEvidence(secureFigures);

  const baseline = await startServerProcess('baseline', [...nodeFlags('baseline'), BASELINE, '--data-dir', dataDir, '--port', '0'], join(dataDir, 'baseline.log'));
  const baselineTarget: Target = { ...secureTarget, origin: `https://127.0.0.1:${baseline.port}` };
  await probe('baseline', baselineTarget);
  say(`baseline: pid ${baseline.pid}, port ${baseline.port}, TLS ${await negotiatedTls(baseline.port, ca)}`);
  const baselineFigures = await measure(baseline, baselineTarget, ca);
  await stopServer(baseline);
  await dispatcher.close();

  say(`\n${comparisonTable(secureFigures, baselineFigures)}\n`);
  say(`${failuresTable({ secure: secureFigures, baseline: baselineFigures })}\n`);
  say(cpuTable({ secure: secureFigures, baseline: baselineFigures }));
  const warning = interferenceWarning({ secure: secureFigures, baseline: baselineFigures });
  say(warning ? `${warning}\n` : '');
  say(memoryLine(secureFigures, baselineFigures));
  for (const line of evidence.lines) say(line);
  say('\ntargets (issue 2, 2-core machine, load generator included):');
  for (const line of targetLines(secureFigures, baselineFigures)) say(`  ${line}`);

  const bad = badResponses(secureFigures) + badResponses(baselineFigures);
  if (bad > 0) warn(`\nFAILED: ${bad} responses were not a verified 2xx (see the table above)`);
  if (!evidence.ok) warn('\nFAILED: the audit log holds fewer events than the acknowledged requests');
  return bad === 0 && evidence.ok ? 0 : 1;
}

runBenchmark(main, cleanup);
