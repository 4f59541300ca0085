// A concurrent write load against a server running as a child process, cut short by kill -9, and
// the check that follows: every acknowledged write is stored exactly as sent, a write in flight at
// the kill is there whole or not at all, and nothing appears that was never written.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';

export type LoadData = { loop: number; n: number; pad: string; text: string };

export interface LoadWrite {
  id: string;
  data: LoadData;
}

export interface StoredRecord {
  version: number;
  data: LoadData;
}

export interface ApiClient {
  call(method: 'GET' | 'PUT', path: string, body?: unknown): Promise<{ status: number; text: string; json: any }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  close(): Promise<void>;
}

/** A minimal API client for a child server: undici over TLS with the data directory's CA. */
export function apiClient(url: string, ca: Buffer, apiKey: string, connections = 64): ApiClient {
  const agent = new Agent({ connect: { ca, servername: 'localhost' }, connections, headersTimeout: 15_000, bodyTimeout: 15_000 });
  return {
    async call(method, path, body) {
      const res = await request(`${url}${path}`, {
        method,
        dispatcher: agent,
        headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.body.text();
      return { status: res.statusCode, text, json: text ? JSON.parse(text) : undefined };
    },
    close: () => agent.destroy(),
  };
}

export interface LoadOutcome {
  acknowledged: Map<string, StoredRecord>;
  inFlightAtKill: LoadWrite[];
  /** Writes refused (not 2xx) before the kill, with their answers: a healthy server refuses none. */
  refused: string[];
  /** How long the load ran before the kill. */
  ranMs: number;
}

/** How long the load runs before the kill: `loadMs`, and on a slow machine longer, until `minAcknowledged` writes were acknowledged (for at most 30 s more). */
export interface LoadLength {
  loadMs: number;
  minAcknowledged?: number;
}

/**
 * `loops` writers, each writing its own new records and, every fourth write, replacing its counter
 * record, into the collection at `base`, as long as `length` says; then `kill` runs while they are in flight.
 */
export async function writeUntilKilled(api: ApiClient, base: string, loops: number, length: LoadLength, kill: () => Promise<void>): Promise<LoadOutcome> {
  const outcome: LoadOutcome = { acknowledged: new Map(), inFlightAtKill: [], refused: [], ranMs: 0 };
  const started = Date.now();
  let killed = false;
  const loop = async (i: number) => {
    for (let n = 0; ; n++) {
      const id = n % 4 === 3 ? `loop${i}-counter` : `loop${i}-n${n}`;
      const data: LoadData = { loop: i, n, pad: randomBytes(32).toString('base64'), text: `écrit ✓ ${n} 🙂` };
      let res;
      try {
        res = await api.call('PUT', `${base}/records/${id}`, data);
      } catch {
        outcome.inFlightAtKill.push({ id, data });
        return;
      }
      if (res.status === 200 || res.status === 201) outcome.acknowledged.set(id, { version: res.json.version, data });
      else if (!killed) outcome.refused.push(`${id}: ${res.status} ${res.text}`);
      else {
        outcome.inFlightAtKill.push({ id, data });
        return;
      }
    }
  };
  let stopped = false;
  const load = Promise.all(Array.from({ length: loops }, (_, i) => loop(i))).finally(() => (stopped = true));
  await sleep(length.loadMs);
  const deadline = Date.now() + 30_000;
  while (!stopped && outcome.acknowledged.size < (length.minAcknowledged ?? 0) && Date.now() < deadline) await sleep(10);
  killed = true;
  outcome.ranMs = Date.now() - started;
  await kill();
  await load;
  return outcome;
}

/** Every record of the collection at `base`, page by page. */
export async function readAllRecords(api: ApiClient, base: string): Promise<Map<string, StoredRecord>> {
  const stored = new Map<string, StoredRecord>();
  let cursor: string | null = null;
  do {
    const page = await api.call('GET', `${base}/records?limit=500${cursor ? `&cursor=${cursor}` : ''}`);
    if (page.status !== 200) throw new Error(`listing records: ${page.status} ${page.text}`);
    for (const r of page.json.records as { id: string; version: number; data: LoadData }[]) stored.set(r.id, { version: r.version, data: r.data });
    cursor = page.json.nextCursor;
  } while (cursor);
  return stored;
}

export interface LoadDiscrepancies {
  /** Acknowledged writes not stored. */
  missing: string[];
  /** Acknowledged writes stored otherwise than acknowledged. */
  wrong: string[];
  /** Writes in flight at the kill stored differently from what was sent. */
  torn: string[];
  /** Records that were never written. */
  unknown: string[];
}

/** Compares what is stored with what the load sent and was told; every list is empty when nothing acknowledged was lost. */
export function compareWithLoad(outcome: LoadOutcome, stored: Map<string, StoredRecord>): LoadDiscrepancies {
  const { acknowledged, inFlightAtKill } = outcome;
  const same = (a: LoadData, b: LoadData) => JSON.stringify(a) === JSON.stringify(b);
  const found: LoadDiscrepancies = { missing: [], wrong: [], torn: [], unknown: [] };
  for (const [id, ack] of acknowledged) {
    const record = stored.get(id);
    if (!record) {
      found.missing.push(id);
      continue;
    }
    // A counter may have moved one version further: its write in flight at the kill committed.
    const pending = inFlightAtKill.find((w) => w.id === id);
    const exact = record.version === ack.version && same(record.data, ack.data);
    const pendingCommitted = pending !== undefined && record.version === ack.version + 1 && same(record.data, pending.data);
    if (!exact && !pendingCommitted) found.wrong.push(`${id}: acknowledged v${ack.version} ${JSON.stringify(ack.data)}, found v${record.version} ${JSON.stringify(record.data)}`);
  }
  for (const w of inFlightAtKill) {
    const record = stored.get(w.id);
    if (record && !acknowledged.has(w.id) && (record.version !== 1 || !same(record.data, w.data))) {
      found.torn.push(`${w.id}: sent ${JSON.stringify(w.data)}, found v${record.version} ${JSON.stringify(record.data)}`);
    }
  }
  const sent = new Set([...acknowledged.keys(), ...inFlightAtKill.map((w) => w.id)]);
  found.unknown = [...stored.keys()].filter((id) => !sent.has(id));
  return found;
}
