import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { apiKeyParts, startHarness } from './strongroom.js';

test('a harness that kept a presented credential in its logs fails to close', async () => {
  const h = await startHarness('sqlite');
  const t = await h.tenant();
  assert.equal((await h.call('GET', `/v1/tenants/${t.tenantId}`, { key: t.apiKey })).status, 200);
  h.logs.lines.push(`{"msg":"oops","authorization":"Bearer ${apiKeyParts(t.apiKey).secret}"}`);
  await assert.rejects(h.close(), /credentials kept: 1 in log lines/);
});

test('a harness that kept a presented ID token in its data directory fails to close', async () => {
  const h = await startHarness('sqlite');
  const t = await h.tenant();
  const token = `eyJhbGciOiJub25lIn0.${Buffer.from(JSON.stringify({ sub: 'someone-with-a-long-id' })).toString('base64url')}.`;
  await h.call('GET', `/v1/tenants/${t.tenantId}`, { key: token });
  writeFileSync(`${h.config.dataDir}/leak.txt`, token);
  await assert.rejects(h.close(), /at rest: .*leak\.txt/);
});
