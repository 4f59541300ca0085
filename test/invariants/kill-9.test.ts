// Invariant 7 (first half): an acknowledged write survives `kill -9`. The real server runs as a
// child process under a concurrent write load; it is killed with SIGKILL while writes are in
// flight, restarted on the same data, and every write that got a 2xx must be there, exactly as
// sent. A write that was in flight at the kill may or may not be there, but never half-written.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { postgresEnv, runCli, spawnServer, type ServerProcess } from '../support/cli-process.js';
import { DRIVERS, freshPostgresUrl, stopPostgres } from '../support/strongroom.js';

after(stopPostgres);

const LOOPS = 32;
const LOAD_MS = 1000;
const COLLECTION = 'load';

type Data = { loop: number; n: number; pad: string; text: string };
interface Write {
  id: string;
  data: Data;
}
interface Stored {
  version: number;
  data: Data;
}

/** A minimal API client for the child server: undici over TLS with the data directory's CA. */
function client(url: string, ca: Buffer, apiKey: string) {
  const agent = new Agent({ connect: { ca, servername: 'localhost' }, connections: LOOPS * 2, headersTimeout: 15_000, bodyTimeout: 15_000 });
  const call = async (method: 'GET' | 'PUT', path: string, body?: unknown) => {
    const res = await request(`${url}${path}`, {
      method,
      dispatcher: agent,
      headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    return { status: res.statusCode, text, json: text ? JSON.parse(text) : undefined };
  };
  return { call, close: () => agent.destroy() };
}

for (const driver of DRIVERS) {
  describe(`kill -9 on ${driver}`, () => {
    test('every write acknowledged before kill -9 is there after a restart, exactly as sent; the audit chain verifies', { timeout: 120_000 }, async (t) => {
      const dataDir = mkdtempSync(join(tmpdir(), 'strongroom-kill9-'));
      const env = driver === 'postgres' ? postgresEnv(await freshPostgresUrl()) : {};
      const servers: ServerProcess[] = [];
      const clients: { close(): Promise<void> }[] = [];
      try {
        const first = await spawnServer(dataDir, { env });
        servers.push(first);
        const created = await runCli(dataDir, ['tenant', 'create', 'x', '--json'], { env });
        assert.equal(created.code, 0, created.stderr);
        const { tenantId, apiKey } = JSON.parse(created.stdout) as { tenantId: string; apiKey: string };
        const ca = readFileSync(join(dataDir, 'tls', 'ca-cert.pem'));
        const base = `/v1/tenants/${tenantId}/collections/${COLLECTION}`;

        const api = client(first.url, ca, apiKey);
        clients.push(api);
        const declared = await api.call('PUT', base, { indexes: [{ field: 'loop', expectedRows: 100_000 }] });
        assert.equal(declared.status, 201, declared.text);

        // The load: each loop writes its own new records, and every fourth write replaces its counter record.
        const acknowledged = new Map<string, Stored>();
        const inFlightAtKill: Write[] = [];
        const refused: string[] = [];
        let killed = false;
        const loop = async (i: number) => {
          for (let n = 0; ; n++) {
            const id = n % 4 === 3 ? `loop${i}-counter` : `loop${i}-n${n}`;
            const data: Data = { loop: i, n, pad: randomBytes(32).toString('base64'), text: `écrit ✓ ${n} 🙂` };
            let res;
            try {
              res = await api.call('PUT', `${base}/records/${id}`, data);
            } catch {
              inFlightAtKill.push({ id, data });
              return;
            }
            if (res.status === 200 || res.status === 201) acknowledged.set(id, { version: res.json.version, data });
            else if (!killed) refused.push(`${id}: ${res.status} ${res.text}`);
            else {
              inFlightAtKill.push({ id, data });
              return;
            }
          }
        };
        const load = Promise.all(Array.from({ length: LOOPS }, (_, i) => loop(i)));
        await sleep(LOAD_MS);
        killed = true;
        await first.kill9();
        await load;
        await api.close();

        t.diagnostic(`${acknowledged.size} records acknowledged by ${LOOPS} writers in ${LOAD_MS} ms; ${inFlightAtKill.length} writes in flight at the kill`);
        assert.deepEqual(refused, [], 'no write was refused under load');
        assert.ok(acknowledged.size >= LOOPS, `a real load: ${acknowledged.size} records acknowledged`);
        assert.equal(inFlightAtKill.length, LOOPS, 'every loop had a write in flight when the server was killed');

        // Restart on the same data and read everything back.
        const second = await spawnServer(dataDir, { env });
        servers.push(second);
        const reader = client(second.url, ca, apiKey);
        clients.push(reader);
        const stored = new Map<string, Stored>();
        let cursor: string | null = null;
        do {
          const page = await reader.call('GET', `${base}/records?limit=500${cursor ? `&cursor=${cursor}` : ''}`);
          assert.equal(page.status, 200, page.text);
          for (const r of page.json.records as { id: string; version: number; data: Data }[]) stored.set(r.id, { version: r.version, data: r.data });
          cursor = page.json.nextCursor;
        } while (cursor);

        const missing: string[] = [];
        const wrong: string[] = [];
        for (const [id, ack] of acknowledged) {
          const found = stored.get(id);
          if (!found) {
            missing.push(id);
            continue;
          }
          // A counter may have moved one version further: its write in flight at the kill committed.
          const pending = inFlightAtKill.find((w) => w.id === id);
          const exact = found.version === ack.version && JSON.stringify(found.data) === JSON.stringify(ack.data);
          const pendingCommitted = pending !== undefined && found.version === ack.version + 1 && JSON.stringify(found.data) === JSON.stringify(pending.data);
          if (!exact && !pendingCommitted) wrong.push(`${id}: acknowledged v${ack.version} ${JSON.stringify(ack.data)}, found v${found.version} ${JSON.stringify(found.data)}`);
        }
        assert.deepEqual(missing, [], `acknowledged writes lost after kill -9 (${missing.length} of ${acknowledged.size})`);
        assert.deepEqual(wrong, [], 'acknowledged writes changed after kill -9');

        for (const w of inFlightAtKill) {
          const found = stored.get(w.id);
          if (found && !acknowledged.has(w.id)) {
            assert.equal(found.version, 1, `${w.id}: a new record`);
            assert.deepEqual(found.data, w.data, `${w.id}: a write in flight at the kill is there whole or not at all`);
          }
        }
        const sent = new Set([...acknowledged.keys(), ...inFlightAtKill.map((w) => w.id)]);
        assert.deepEqual([...stored.keys()].filter((id) => !sent.has(id)), [], 'no record appears that was never written');

        await reader.close();
        await second.stop();
        const verified = await runCli(dataDir, ['audit', 'verify', '--tenant', tenantId], { env });
        assert.equal(verified.code, 0, `audit verify after kill -9: ${verified.stdout}${verified.stderr}`);
        assert.match(verified.stdout, new RegExp(`ok\\s+${tenantId}: \\d+ events`));
      } finally {
        for (const c of clients) await c.close().catch(() => undefined);
        for (const s of servers) await s.kill9();
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
}
