import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { percentile } from './percentile.js';
import { namesRecord, recordBody } from './workloads.js';

export interface PacedWriteSettings {
  /** https://127.0.0.1:PORT */
  origin: string;
  /** The name in the server certificate (SNI). */
  servername: string;
  ca: Buffer;
  /** Clients, each with its own keep-alive connection, each sending on its own schedule. */
  connections: number;
  ratePerSecond: number;
  durationSeconds: number;
  recordBytes: number;
  /** `/v1/tenants/T/collections/C/records` */
  recordsPath: string;
  headers: Record<string, string>;
}

export interface PacedWriteResult {
  durationSeconds: number;
  /** 2xx responses whose body named the record written. */
  ok: number;
  opsPerSecond: number;
  /** Responses that were not a 2xx naming the record, and requests that failed. */
  failed: number;
  statusCodes: Record<string, number>;
  latencyMs: { p50: number; p99: number; max: number };
}

/**
 * PUTs records with distinct ids `<prefix>0`, `<prefix>1`, … at a steady rate: each client sends
 * at fixed intervals, the clients staggered evenly, so writes arrive spread over every second
 * (autocannon's rate limit sends each second's budget in one burst). A client whose request
 * outlasts its interval sends the next one at once. `onWritten` is called the moment a write is
 * acknowledged.
 */
export async function pacedWrites(settings: PacedWriteSettings, idPrefix: string, onWritten: (id: string) => void): Promise<PacedWriteResult> {
  const dispatcher = new Agent({ connect: { ca: settings.ca, servername: settings.servername }, connections: settings.connections });
  const headers = { ...settings.headers, 'content-type': 'application/json' };
  const periodMs = (1000 * settings.connections) / settings.ratePerSecond;
  const latencies: number[] = [];
  const statusCodes: Record<string, number> = {};
  let next = 0;
  let failed = 0;
  const started = performance.now();
  const end = started + settings.durationSeconds * 1000;

  async function client(index: number): Promise<void> {
    for (let slot = started + (index * periodMs) / settings.connections; slot < end; slot += periodMs) {
      const wait = slot - performance.now();
      if (wait > 0) await sleep(wait);
      const n = next++;
      const id = `${idPrefix}${n}`;
      const sent = performance.now();
      try {
        const res = await request(`${settings.origin}${settings.recordsPath}/${id}`, { method: 'PUT', dispatcher, headers, body: recordBody(n, settings.recordBytes) });
        const body = await res.body.text();
        statusCodes[res.statusCode] = (statusCodes[res.statusCode] ?? 0) + 1;
        if (res.statusCode >= 200 && res.statusCode <= 299 && namesRecord(body, id)) {
          latencies.push(performance.now() - sent);
          onWritten(id);
        } else failed += 1;
      } catch {
        failed += 1;
      }
    }
  }

  try {
    await Promise.all(Array.from({ length: settings.connections }, (_, i) => client(i)));
  } finally {
    await dispatcher.close();
  }
  const durationSeconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    durationSeconds,
    ok: latencies.length,
    opsPerSecond: latencies.length / durationSeconds,
    failed,
    statusCodes,
    latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), max: latencies.at(-1) ?? NaN },
  };
}
