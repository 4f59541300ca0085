// Invariant 7 (first half): an acknowledged write survives `kill -9`. The real server runs as a
// child process under a concurrent write load; it is killed with SIGKILL while writes are in
// flight, restarted on the same data, and every write that got a 2xx must be there, exactly as
// sent. A write that was in flight at the kill may or may not be there, but never half-written.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { postgresEnv, runCli, spawnServer, type ServerProcess } from '../support/cli-process.js';
import { DRIVERS, freshPostgresUrl, stopPostgres } from '../support/strongroom.js';
import { apiClient, compareWithLoad, readAllRecords, writeUntilKilled } from '../support/write-load.js';

after(stopPostgres);

const LOOPS = 32;
const LOAD_MS = 1000;
const COLLECTION = 'load';

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

        const api = apiClient(first.url, ca, apiKey, LOOPS * 2);
        clients.push(api);
        const declared = await api.call('PUT', base, { indexes: [{ field: 'loop', expectedRows: 100_000 }] });
        assert.equal(declared.status, 201, declared.text);

        const outcome = await writeUntilKilled(api, base, LOOPS, { loadMs: LOAD_MS, minAcknowledged: LOOPS }, () => first.kill9());
        await api.close();
        const { acknowledged, inFlightAtKill, refused } = outcome;

        t.diagnostic(`${acknowledged.size} records acknowledged by ${LOOPS} writers in ${outcome.ranMs} ms; ${inFlightAtKill.length} writes in flight at the kill`);
        assert.deepEqual(refused, [], 'no write was refused under load');
        assert.ok(acknowledged.size >= LOOPS, `a real load: ${acknowledged.size} records acknowledged`);
        assert.equal(inFlightAtKill.length, LOOPS, 'every loop had a write in flight when the server was killed');

        // Restart on the same data and read everything back.
        const second = await spawnServer(dataDir, { env });
        servers.push(second);
        const reader = apiClient(second.url, ca, apiKey);
        clients.push(reader);
        const found = compareWithLoad(outcome, await readAllRecords(reader, base));
        assert.deepEqual(found.missing, [], `acknowledged writes lost after kill -9 (${found.missing.length} of ${acknowledged.size})`);
        assert.deepEqual(found.wrong, [], 'acknowledged writes changed after kill -9');
        assert.deepEqual(found.torn, [], 'a write in flight at the kill is there whole or not at all');
        assert.deepEqual(found.unknown, [], 'no record appears that was never written');

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
