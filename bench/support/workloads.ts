import autocannon from 'autocannon';

/** Where and how hard to push: the same for the secure server and the baseline. */
export interface LoadSettings {
  /** https://127.0.0.1:PORT */
  origin: string;
  /** The name in the server certificate (SNI). */
  servername: string;
  ca: Buffer;
  connections: number;
  durationSeconds: number;
  recordBytes: number;
  /** `/v1/tenants/T/collections/C/records` */
  recordsPath: string;
  /** Sent with every request (the baseline ignores the credential but gets the same bytes). */
  headers: Record<string, string>;
}

export interface WorkloadResult {
  workload: 'write' | 'read';
  durationSeconds: number;
  /** 2xx responses whose body named the record asked for. */
  ok: number;
  opsPerSecond: number;
  latencyMs: { p50: number; p99: number; mean: number; max: number };
  non2xx: number;
  /** 2xx responses whose body was not the record asked for. */
  wrongBodies: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** What the machine did meanwhile; filled in by the caller, who sees the server process. */
  conditions?: RunConditions;
}

export interface RunConditions {
  /** CPU seconds every other process on the machine used meanwhile (a shared machine shows here); null without /proc. */
  otherCpuSeconds: number | null;
  /** CPU seconds the server process used during the workload; null without /proc. */
  serverCpuSeconds: number | null;
  /** CPU seconds this process (the load generator) used during the workload. */
  loadGeneratorCpuSeconds: number;
}

let active: autocannon.Instance | undefined;

/** Stops a running load at once (the benchmark is being interrupted). */
export function stopActiveLoad(): void {
  active?.stop();
}

/**
 * A JSON object of exactly `bytes` UTF-8 bytes, distinct per `n`, whose `email` field is indexed.
 * @example recordBody(7, 1024) // {"email":"user7@bench.example","seq":7,"note":"xxxx…"}
 */
export function recordBody(n: number, bytes: number): string {
  const head = `{"email":"user${n}@bench.example","seq":${n},"note":"`;
  const tail = '"}';
  const pad = bytes - head.length - tail.length;
  if (pad < 0) throw new Error(`a record of ${bytes} bytes is too small for the benchmark's fields`);
  return head + 'x'.repeat(pad) + tail;
}

/** Both servers answer a record with a JSON object whose first member is its id. */
export const namesRecord = (body: string, id: string) => body.startsWith(`{"id":"${id}"`);

function run(settings: LoadSettings, title: string, requests: autocannon.Request[]): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    active = autocannon(
      {
        url: settings.origin,
        title,
        connections: settings.connections,
        pipelining: 1,
        duration: settings.durationSeconds,
        servername: settings.servername,
        tlsOptions: { ca: settings.ca, servername: settings.servername },
        requests,
      },
      (error, result) => {
        active = undefined;
        if (error) reject(error);
        else resolve(result);
      },
    );
  });
}

function summarize(workload: WorkloadResult['workload'], result: autocannon.Result, ok: number, wrongBodies: number): WorkloadResult {
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count]));
  return {
    workload,
    durationSeconds: result.duration,
    ok,
    opsPerSecond: ok / result.duration,
    latencyMs: { p50: result.latency.p50, p99: result.latency.p99, mean: result.latency.mean, max: result.latency.max },
    non2xx: result.non2xx,
    wrongBodies,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
  };
}

/** PUTs records with distinct ids `<prefix>0`, `<prefix>1`, …; returns the ids acknowledged with a 2xx. */
export async function writeWorkload(settings: LoadSettings, idPrefix: string): Promise<{ result: WorkloadResult; writtenIds: string[] }> {
  let next = 0;
  let wrongBodies = 0;
  const writtenIds: string[] = [];
  const headers = { ...settings.headers, 'content-type': 'application/json' };
  const result = await run(settings, 'write', [
    {
      method: 'PUT',
      setupRequest(request, context) {
        const n = next++;
        const id = `${idPrefix}${n}`;
        context.id = id;
        return { ...request, method: 'PUT', path: `${settings.recordsPath}/${id}`, headers, body: recordBody(n, settings.recordBytes) };
      },
      onResponse(status, body, context) {
        if (status < 200 || status > 299) return;
        const id = context.id as string;
        if (namesRecord(body, id)) writtenIds.push(id);
        else wrongBodies += 1;
      },
    },
  ]);
  return { result: summarize('write', result, writtenIds.length, wrongBodies), writtenIds };
}

/** GETs records picked at random among `ids`. */
export async function readWorkload(settings: LoadSettings, ids: readonly string[]): Promise<WorkloadResult> {
  if (ids.length === 0) throw new Error('the read workload needs records: the write workload acknowledged none');
  let ok = 0;
  let wrongBodies = 0;
  const result = await run(settings, 'read', [
    {
      method: 'GET',
      setupRequest(request, context) {
        const id = ids[Math.floor(Math.random() * ids.length)]!;
        context.id = id;
        return { ...request, method: 'GET', path: `${settings.recordsPath}/${id}`, headers: settings.headers };
      },
      onResponse(status, body, context) {
        if (status < 200 || status > 299) return;
        if (namesRecord(body, context.id as string)) ok += 1;
        else wrongBodies += 1;
      },
    },
  ]);
  return summarize('read', result, ok, wrongBodies);
}
