// The purge (issue 8): 60 days after termination, by the database's clock, the tenant's KEK is
// destroyed and its rows and blobs are deleted on every backend; after that, restoring any backup
// or the whole retained change log yields none of its data while the other tenants restore intact;
// its owner fetches a deletion certificate that verifies with the published key alone.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { takeBackup } from '../../src/core/recovery/backup.js';
import { listSegments, openManifest, readObject } from '../../src/core/recovery/catalog.js';
import { restoreInto, type RestoreTarget } from '../../src/core/recovery/restore.js';
import { shippingStatus, shipThrough } from '../../src/core/recovery/ship.js';
import { duePurges, purgeTenant, runDuePurges, tenantBlobPrefixes } from '../../src/core/lifecycle/purge.js';
import { decodeSegment } from '../../src/journal/segment.js';
import { openSystemKey } from '../../src/core/recovery/recovery-keys.js';
import { chunkAad, segmentKeyAad } from '../../src/core/recovery/ship.js';
import { openRecord } from '../../src/crypto/record-cipher.js';
import { parseTagged } from '../../src/store/db/statement-journal.js';
import { JOURNALED_TABLES } from '../../src/store/db/journaled-tables.js';
import { ownedDigest } from '../../src/store/db/owned-rows.js';
import { RecoveryError } from '../../src/errors.js';
import { startIdentityProviders, type IdentityProviders } from '../support/identity-providers.js';
import { emptyDatabase } from '../support/recovery.js';
import { DRIVERS, startHarness, stopPostgres, type Harness } from '../support/strongroom.js';

let idp: IdentityProviders;
before(async () => {
  idp = await startIdentityProviders();
});
after(async () => {
  await idp.close();
  await stopPostgres();
});

const DAY = 86_400_000;

for (const driver of DRIVERS) {
  describe(`tenant purge on ${driver}`, () => {
    let h: Harness;
    let now = Date.parse('2026-11-29T12:00:00Z');
    let ending: { tenantId: string; apiKey: string };
    let staying: { tenantId: string; apiKey: string };
    let base: string;
    const backupIds: string[] = [];
    let timeline: string;
    let held: Record<string, number>;
    let midPurgeSeq: number;
    /** What the other tenant wrote; background jobs may add key-use events to its audit log meanwhile. */
    const DATA_TABLES = ['collections', 'records', 'record_versions', 'record_index', 'files', 'file_versions', 'file_folders'];
    const oidc = (claims: Record<string, unknown>) => idp.oidcToken(claims, now);
    const owner = () => oidc({ sub: 'owner-p', email: 'owner@purged.example', email_verified: true });
    const viewer = () => oidc({ sub: 'viewer-p', email: 'viewer@purged.example', email_verified: true });
    const sre = () => oidc({ sub: 'sre-1', amr: ['pwd', 'otp'] });
    const as = async (token: Promise<string>, method: string, path: string, body?: unknown) =>
      h.call(method, path, { headers: { authorization: `Bearer ${await token}` }, ...(body === undefined ? {} : { body }) });
    const tenantStatus = async (tenantId: string) => (await h.core.db.reader.selectFrom('tenants').select('status').where('id', '=', tenantId).executeTakeFirstOrThrow()).status;
    const rowsOf = async (tenantId: string) => {
      const counts: Record<string, number> = {};
      for (const table of JOURNALED_TABLES) {
        const rows = await h.core.db.reader.selectFrom(table.name).select((eb) => eb.fn.countAll<number>().as('n')).where(sql.ref(table.tenantColumn), '=', tenantId).executeTakeFirstOrThrow();
        if (Number(rows.n) > 0) counts[table.name] = Number(rows.n);
      }
      return counts;
    };
    /** Backups in the store that hold a part of the tenant: ours, and any the backup job took as the clock moved. */
    const backupsHolding = async (tenantId: string) => {
      const held: { backupId: string; seq: number }[] = [];
      for (const row of await h.core.db.reader.selectFrom('backups').select(['backup_id', 'timeline']).where('pruned_at', 'is', null).orderBy('seq').execute()) {
        const { manifest } = await openManifest(h.core, row.timeline, row.backup_id);
        if (manifest.parts.some((p) => p.name === tenantId)) held.push({ backupId: manifest.backupId, seq: manifest.seq });
      }
      return held;
    };
    const shipAll = async () => shipThrough(h.core, (await shippingStatus(h.core)).journalSeq);
    const blobsOf = async (tenantId: string) => {
      const keys: string[] = [];
      for (const backend of h.core.blobs.backends) {
        for (const prefix of tenantBlobPrefixes(tenantId)) for await (const key of backend.list(prefix)) keys.push(`${backend.name}:${key}`);
      }
      return keys;
    };

    before(async () => {
      h = await startHarness(driver, {
        now: () => now,
        env: {
          ...idp.env(),
          STRONGROOM_OPERATORS__IDENTITIES: JSON.stringify([{ issuer: idp.issuer, subject: 'sre-1', roles: ['sre'] }]),
          // The KMS destroys a scheduled key at once, so the purge finishes in one run.
          STRONGROOM_KMS__DESTROY_WAIT_SECONDS: '0',
          // No version ages out while the clock moves 60 days: the certificate counts what was written.
          STRONGROOM_FILES__RETENTION_DAYS: '365',
          // And the whole log stays in the window, so a restore can start from its first entry.
          STRONGROOM_RECOVERY__SEGMENT_RETENTION_DAYS: '365',
        },
      });
      ending = await h.tenant('ending');
      staying = await h.tenant('staying');
      base = `/v1/tenants/${ending.tenantId}`;
      for (const [email, role] of [['owner@purged.example', 'owner'], ['viewer@purged.example', 'viewer']]) {
        assert.equal((await h.call('POST', `${base}/members`, { key: ending.apiKey, body: { email, role } })).status, 201);
      }
      assert.equal((await as(owner(), 'GET', base)).status, 200, 'the owner claims the invitation');
      assert.equal((await as(viewer(), 'GET', base)).status, 200, 'the viewer claims the invitation');
      for (const t of [ending, staying]) {
        const tb = `/v1/tenants/${t.tenantId}`;
        assert.equal((await h.call('PUT', `${tb}/collections/notes`, { key: t.apiKey, body: { indexes: [] } })).status, 201);
        for (let i = 0; i < 3; i++) assert.equal((await h.call('PUT', `${tb}/collections/notes/records/n${i}`, { key: t.apiKey, body: { text: `secret ${i}` } })).status, 201);
        assert.equal((await h.call('PUT', `${tb}/collections/notes/records/n0`, { key: t.apiKey, body: { text: 'secret 0, again' } })).status, 200);
        for (const content of ['first draft', 'second draft']) {
          assert.equal((await h.call('PUT', `${tb}/files/docs/plan.txt`, { key: t.apiKey, rawBody: content, headers: { 'content-type': 'text/plain' } })).status, 201);
        }
      }
      // An export archive, built by the server's job: its blob is the tenant's too.
      const asked = await h.call('POST', `${base}/exports`, { key: ending.apiKey, body: { includeVersions: true } });
      assert.equal(asked.status, 202, asked.text);
      for (;;) {
        const status = await h.call('GET', `${base}/exports/${asked.json.exportId}`, { key: ending.apiKey });
        if (status.json.status === 'ready') break;
        assert.equal(status.json.status, 'building', status.text);
        await new Promise((r) => setTimeout(r, 50));
      }
      backupIds.push((await takeBackup(h.core)).backupId);
      assert.equal((await h.call('PUT', `${base}/collections/notes/records/n3`, { key: ending.apiKey, body: { text: 'after the backup' } })).status, 201);
      // From here the test runs the purge and shipping itself: a scheduler moved 60 days on by the clock would race it.
      await h.server.jobs.stop();
      await shipAll();
      timeline = (await h.core.db.reader.selectFrom('journal_head').select('timeline').executeTakeFirstOrThrow()).timeline;
    });
    after(() => h.close());

    test('nothing is purged before the purge date; on day 60 the tenant is purged: no row or blob of it remains, the other tenant is untouched', async () => {
      const terminated = await as(owner(), 'POST', `${base}/termination`, { confirm: ending.tenantId });
      assert.equal(terminated.status, 200, terminated.text);
      const stayingBefore = await ownedDigest(h.core.db.reader, staying.tenantId, DATA_TABLES);
      held = await rowsOf(ending.tenantId);
      assert.ok(held.records === 4 && held.record_versions === 5 && held.file_versions === 2, JSON.stringify(held));
      assert.ok((await blobsOf(ending.tenantId)).some((key) => key.includes(`exports/${ending.tenantId}/`)), 'its export archive is stored');

      now += 59 * DAY;
      assert.equal(await runDuePurges(h.core), 'the owners of 1 tenants reminded of their purge', 'day 59: a reminder, no purge');
      const reminder = await h.core.db.reader.selectFrom('outbox').select(['payload']).where('tenant_id', '=', ending.tenantId).where('event_type', '=', 'tenant.purge_scheduled').execute();
      assert.equal(reminder.length, 1, 'the owners are told once, while they can still export');
      assert.equal(JSON.parse(reminder[0]!.payload).purgeAt, Date.parse('2026-11-29T12:00:00Z') + 60 * DAY);
      assert.equal(await tenantStatus(ending.tenantId), 'terminated');
      // Only its audit log grew: the reminder is audited.
      const withoutAudit = ({ audit_events: _, ...rest }: Record<string, number>) => rest;
      assert.deepEqual(withoutAudit(await rowsOf(ending.tenantId)), withoutAudit(held), 'day 59: nothing deleted');
      assert.equal((await h.call('GET', `${base}/collections/notes/records/n1`, { key: ending.apiKey })).status, 200, 'day 59: still readable');

      now += 1 * DAY + 3 * 3_600_000;
      const overdue = await as(sre(), 'GET', '/v1/ops/lifecycle');
      assert.equal(overdue.status, 200, overdue.text);
      assert.deepEqual(
        overdue.json.overduePurges.map((p: { tenantId: string }) => p.tenantId),
        [ending.tenantId],
        'past the date and not purged: the evidence names it',
      );
      assert.deepEqual(await duePurges(h.core), [ending.tenantId]);
      // The journal's head once the key is scheduled and before the rows go: a restore point in the middle of the purge.
      let midPurge: Promise<number> | undefined;
      const step = await purgeTenant(h.core, ending.tenantId, (s) => {
        if (s === 'blobs-deleted') midPurge = shippingStatus(h.core).then((status) => status.journalSeq);
      });
      assert.equal(step, 'purged');
      midPurgeSeq = await midPurge!;
      assert.equal(await tenantStatus(ending.tenantId), 'purged');
      assert.deepEqual((await as(sre(), 'GET', '/v1/ops/lifecycle')).json.overduePurges, [], 'nothing overdue once purged');

      const left = await rowsOf(ending.tenantId);
      assert.deepEqual(Object.keys(left).sort(), ['members', 'tenants'], `only the tenant's row and its owner's sign-in link remain: ${JSON.stringify(left)}`);
      assert.equal(left.members, 1);
      const kept = await h.core.db.reader.selectFrom('members').selectAll().where('tenant_id', '=', ending.tenantId).executeTakeFirstOrThrow();
      assert.equal(kept.role, 'owner');
      assert.equal(kept.email_enc, null, "the owner's e-mail address is gone");
      for (const table of ['tenant_heads', 'outbox', 'deliveries', 'exports'] as const) {
        assert.equal((await h.core.db.reader.selectFrom(table).select('tenant_id').where('tenant_id', '=', ending.tenantId).execute()).length, 0, table);
      }
      assert.deepEqual(await blobsOf(ending.tenantId), [], 'no blob of the tenant on any backend');
      assert.ok((await blobsOf(staying.tenantId)).length >= 2, "the other tenant's blobs are there");
      assert.equal(await ownedDigest(h.core.db.reader, staying.tenantId, DATA_TABLES), stayingBefore, 'the other tenant is untouched');
      assert.equal((await h.call('GET', `/v1/tenants/${staying.tenantId}/files/docs/plan.txt`, { key: staying.apiKey })).text, 'second draft');
      const versions = await h.core.kms.listKeyVersions(`tenant.${ending.tenantId}`);
      assert.ok(versions.length > 0 && versions.every((v) => v.state === 'destroyed'), JSON.stringify(versions));

      assert.equal((await h.call('GET', `${base}/collections/notes/records/n1`, { key: ending.apiKey })).status, 401, 'its API keys are gone');
      assert.equal((await as(owner(), 'GET', `${base}/collections/notes/records/n1`)).status, 403, 'a purged tenant allows no reading');
      assert.equal((await as(viewer(), 'GET', `${base}/deletion-certificate`)).status, 404, 'the other members are gone');
      assert.equal(await runDuePurges(h.core), 'no purge due', 'a purged tenant is not purged again');
    });

    test("the owner fetches a deletion certificate that verifies with the published key, and counts what was deleted", async () => {
      const res = await as(owner(), 'GET', `${base}/deletion-certificate`);
      assert.equal(res.status, 200, res.text);
      const jwks = await h.call('GET', '/v1/deletion-certificates/keys');
      assert.equal(jwks.status, 200, 'the keys are public');
      const { payload, protectedHeader } = await compactVerify(res.json.jws, createLocalJWKSet(jwks.json as JSONWebKeySet));
      assert.equal(protectedHeader.alg, 'EdDSA');
      const certificate = JSON.parse(Buffer.from(payload).toString('utf8'));
      assert.deepEqual(certificate, res.json.certificate);
      assert.equal(certificate.tenantId, ending.tenantId);
      assert.deepEqual(
        { records: certificate.deleted.records, recordVersions: certificate.deleted.recordVersions, files: certificate.deleted.files, fileVersions: certificate.deleted.fileVersions, blobs: certificate.deleted.blobs },
        { records: held.records, recordVersions: held.record_versions, files: held.files, fileVersions: held.file_versions, blobs: held.file_versions },
      );
      assert.ok(certificate.keyEncryptionKey.versions.length >= 1 && certificate.keyEncryptionKey.versions.every((v: { state: string }) => v.state === 'destroyed'));
      const holding = (await backupsHolding(ending.tenantId)).map((b) => b.backupId);
      assert.ok(holding.includes(backupIds[0]!));
      assert.deepEqual(certificate.remainingCiphertext.backups.map((b: { backupId: string }) => b.backupId), holding, 'the backups that hold its ciphertext, with their age-out dates');
      assert.ok(certificate.remainingCiphertext.segments.length > 0, 'and the segments');
      assert.ok(Date.parse(certificate.remainingCiphertext.allGoneBy) > Date.parse(certificate.purgedAt));
      assert.equal((await as(sre(), 'GET', `${base}/deletion-certificate`)).status, 200, 'operators see it too');
      assert.equal((await h.call('GET', `/v1/tenants/${staying.tenantId}/deletion-certificate`, { key: staying.apiKey })).status, 403, 'no API key');

      // A tampered certificate does not verify.
      const [head, body, signature] = (res.json.jws as string).split('.');
      const forged = Buffer.from(body!, 'base64url').toString('utf8').replace('"records":4', '"records":40');
      await assert.rejects(compactVerify(`${head}.${Buffer.from(forged).toString('base64url')}.${signature}`, createLocalJWKSet(jwks.json as JSONWebKeySet)));
    });

    test('restoring every backup and the whole retained log yields its ciphertext but nothing readable; the other tenant restores intact', async () => {
      const holding = await backupsHolding(ending.tenantId);
      assert.ok(holding.length >= 1, 'a backup still holds its (sealed) part');
      const chunks = [];
      for (const { key } of await listSegments(h.core, timeline)) {
        chunks.push(...decodeSegment(await readObject(h.core.blobs, key), key).header.chunks.filter((c) => c.tenant === ending.tenantId && c.keyId !== null));
      }
      assert.ok(chunks.length > 0, 'segments still hold its sealed chunks');
      // What it journaled after its key was scheduled is sealed under the system key: bookkeeping only, none of its data.
      for (const { key } of await listSegments(h.core, timeline)) {
        const segment = decodeSegment(await readObject(h.core.blobs, key), key);
        const systemKey = await openSystemKey(h.core.kms, Buffer.from(segment.header.wrappedKey, 'base64'), segmentKeyAad(timeline, segment.header.first));
        for (const [c, chunk] of segment.header.chunks.entries()) {
          if (chunk.tenant !== ending.tenantId || chunk.keyId !== null) continue;
          const plain = openRecord(systemKey.sealKey, chunkAad(timeline, segment.header.first, chunk.tenant), segment.chunks[c]!).toString('utf8');
          const tables = (parseTagged(plain) as { s: { kind: string; into?: { table: { identifier: { name: string } } } }[] }[]).flatMap((e) => e.s.map((n) => n.into?.table.identifier.name ?? n.kind));
          assert.deepEqual([...new Set(tables)], ['audit_events'], `${key}: only audit events under the system key`);
          assert.equal(plain.includes('secret'), false);
        }
      }

      await shipAll();
      const stayingLive = await ownedDigest(h.core.db.reader, staying.tenantId, DATA_TABLES);
      // Every backup that holds it; the log alone from its first entry; the middle of the purge; the latest point.
      const targets: { target: RestoreTarget; holdsIt: boolean }[] = [
        ...holding.map((b) => ({ target: { seq: b.seq }, holdsIt: true })),
        { target: { seq: holding[0]!.seq - 1 }, holdsIt: true },
        // In the middle of the purge: the key scheduled, the rows not yet deleted.
        { target: { seq: midPurgeSeq }, holdsIt: true },
        { target: { latest: true }, holdsIt: false },
      ];
      for (const { target, holdsIt } of targets) {
        const scratch = await emptyDatabase(driver);
        try {
          const restored = await restoreInto(h.core, scratch, { target, timeline, now });
          if (holdsIt) assert.deepEqual(restored.shredded, [ending.tenantId], `${JSON.stringify(target)}: its copies are there, and left out as unreadable`);
          for (const table of JOURNALED_TABLES) {
            const rows = await scratch.reader.selectFrom(table.name).select((eb) => eb.fn.countAll<number>().as('n')).where(sql.ref(table.tenantColumn), '=', ending.tenantId).executeTakeFirstOrThrow();
            assert.equal(Number(rows.n), 0, `${JSON.stringify(target)}: nothing of it in ${table.name}`);
          }
          if ('latest' in target) assert.equal(await ownedDigest(scratch.reader, staying.tenantId, DATA_TABLES), stayingLive, 'the other tenant restores exactly');
          else assert.ok((await scratch.reader.selectFrom('records').select('record_key').where('tenant_id', '=', staying.tenantId).execute()).length >= 3);
        } finally {
          await scratch.close();
        }
      }
      const scratch = await emptyDatabase(driver);
      try {
        await assert.rejects(restoreInto(h.core, scratch, { target: { latest: true }, timeline, now, tenant: ending.tenantId }), (error: Error) => error instanceof RecoveryError && /purged: its key is destroyed/.test(error.message));
      } finally {
        await scratch.close();
      }
    });
  });
}
