import type { WorkloadResult } from './workloads.js';

/** One server's figures: its two workloads and its peak memory. */
export interface ServerFigures {
  write: WorkloadResult;
  read: WorkloadResult | null;
  peakRssBytes: number | null;
}

/** Targets stated in issue 2 for a 2-core machine, load generator included. */
export const TARGETS = { writesPerSecond: 12_000, readsPerSecond: 25_000, p99Ms: 20, maxTax: 1.5 } as const;

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => `${n.toFixed(n < 10 ? 2 : 1)} ms`;
const mib = (bytes: number | null) => (bytes === null ? 'n/a' : `${(bytes / 1024 / 1024).toFixed(0)} MiB`);

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function comparisonTable(secure: ServerFigures, baseline: ServerFigures): string {
  const rows: string[][] = [];
  for (const workload of ['write', 'read'] as const) {
    const s = secure[workload];
    const b = baseline[workload];
    if (!s || !b) continue;
    rows.push([
      workload,
      int(s.opsPerSecond),
      int(b.opsPerSecond),
      `${(b.opsPerSecond / s.opsPerSecond).toFixed(2)}x`,
      ms(s.latencyMs.p50),
      ms(s.latencyMs.p99),
      ms(b.latencyMs.p50),
      ms(b.latencyMs.p99),
    ]);
  }
  return table(['workload', 'secure ops/s', 'baseline ops/s', 'security tax', 'secure p50', 'secure p99', 'baseline p50', 'baseline p99'], rows);
}

export function failuresTable(figures: Record<string, ServerFigures>): string {
  const rows: string[][] = [];
  for (const [server, f] of Object.entries(figures)) {
    for (const r of [f.write, f.read]) {
      if (!r) continue;
      const codes = Object.entries(r.statusCodes)
        .map(([code, n]) => `${code}:${n}`)
        .join(' ');
      rows.push([`${server} ${r.workload}`, int(r.ok), String(r.non2xx), String(r.wrongBodies), String(r.errors), String(r.timeouts), codes]);
    }
  }
  return table(['run', '2xx ok', 'non-2xx', 'wrong body', 'errors', 'timeouts', 'status codes'], rows);
}

/** Where the CPU went: per operation on the server, and how busy each side was (100% = one core). */
export function cpuTable(figures: Record<string, ServerFigures>): string {
  const rows: string[][] = [];
  for (const [server, f] of Object.entries(figures)) {
    for (const r of [f.write, f.read]) {
      const c = r?.conditions;
      if (!r || !c) continue;
      const serverCpu = c.serverCpuSeconds;
      rows.push([
        `${server} ${r.workload}`,
        serverCpu === null ? 'n/a' : `${Math.round((serverCpu * 1e6) / Math.max(r.ok, 1))} µs`,
        serverCpu === null ? 'n/a' : `${Math.round((serverCpu / r.durationSeconds) * 100)}%`,
        `${Math.round((c.loadGeneratorCpuSeconds / r.durationSeconds) * 100)}%`,
        c.otherCpuSeconds === null ? 'n/a' : `${Math.round((c.otherCpuSeconds / r.durationSeconds) * 100)}%`,
      ]);
    }
  }
  return table(['run', 'server CPU/op', 'server CPU', 'load-generator CPU', 'other processes CPU'], rows);
}

/** A warning when other processes used more than a fifth of a core during any workload; null otherwise. */
export function interferenceWarning(figures: Record<string, ServerFigures>): string | null {
  const disturbed: string[] = [];
  for (const [server, f] of Object.entries(figures)) {
    for (const r of [f.write, f.read]) {
      const other = r?.conditions?.otherCpuSeconds;
      if (r && other != null && other / r.durationSeconds > 0.2) disturbed.push(`${server} ${r.workload} (${Math.round((other / r.durationSeconds) * 100)}%)`);
    }
  }
  return disturbed.length === 0
    ? null
    : `WARNING: other processes took CPU during ${disturbed.join(', ')}: those figures understate this code; rerun on a quiet machine`;
}

/** Any response that was not a verified 2xx; the benchmark fails if this is not zero. */
export function badResponses(f: ServerFigures): number {
  return [f.write, f.read].reduce((sum, r) => (r ? sum + r.non2xx + r.wrongBodies + r.errors + r.timeouts : sum), 0);
}

export function memoryLine(secure: ServerFigures, baseline: ServerFigures): string {
  return `peak RSS (VmHWM): secure ${mib(secure.peakRssBytes)}, baseline ${mib(baseline.peakRssBytes)}`;
}

export function targetLines(secure: ServerFigures, baseline: ServerFigures): string[] {
  const verdict = (ok: boolean) => (ok ? 'met   ' : 'MISSED');
  const lines = [`${verdict(secure.write.opsPerSecond >= TARGETS.writesPerSecond)}  writes/s >= ${int(TARGETS.writesPerSecond)}: ${int(secure.write.opsPerSecond)}`];
  if (secure.read) {
    lines.push(`${verdict(secure.read.opsPerSecond >= TARGETS.readsPerSecond)}  audited reads/s >= ${int(TARGETS.readsPerSecond)}: ${int(secure.read.opsPerSecond)}`);
  }
  for (const r of [secure.write, secure.read]) {
    if (r) lines.push(`${verdict(r.latencyMs.p99 < TARGETS.p99Ms)}  ${r.workload} p99 < ${TARGETS.p99Ms} ms: ${ms(r.latencyMs.p99)}`);
  }
  for (const workload of ['write', 'read'] as const) {
    const s = secure[workload];
    const b = baseline[workload];
    if (!s || !b) continue;
    const tax = b.opsPerSecond / s.opsPerSecond;
    lines.push(`${verdict(tax <= TARGETS.maxTax)}  ${workload} security tax <= ${TARGETS.maxTax}x: ${tax.toFixed(2)}x`);
  }
  return lines;
}
