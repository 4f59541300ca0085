import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { sql, type Kysely } from 'kysely';
import { ownedRows } from '../../store/db/owned-rows.js';
import { encodeAad } from '../../crypto/record-cipher.js';
import { createEncryptStream } from '../../crypto/stream-cipher.js';
import { backupIdFor, backupObject, manifestObject, signManifest, SYSTEM_PART, type BackupManifest, type BackupPart } from '../../journal/backup-manifest.js';
import { JOURNALED_TABLES } from '../../store/db/journaled-tables.js';
import { stringifyTagged } from '../../store/db/statement-journal.js';
import type { Tables } from '../../store/db/tables.js';
import { auditInTx, NO_REQUEST, plainTarget, SYSTEM_CHAIN } from '../audit-events.js';
import type { Actor, Core } from '../context.js';
import { SHREDDED_STATUSES } from '../tenants.js';
import { newSystemKey, sealingKeyFor } from './recovery-keys.js';

const BACKUP: Actor = { kind: 'system', name: 'recovery.backup' };

export const partAad = (backupId: string, name: string) => encodeAad(['strongroom/backup-part', backupId, name]);
export const backupKeyAad = (timeline: string, backupId: string) => ['backup', timeline, backupId];

export interface BackupProgress {
  partsDone: number;
  partsTotal: number;
  rows: number;
  bytes: number;
}

/** One part's plaintext: a JSON line per row, naming its table. */
async function* partLines(db: Kysely<Tables>, owner: string, counts: Record<string, number>, progress: () => void): AsyncGenerator<Buffer> {
  for (const table of JOURNALED_TABLES) {
    counts[table.name] = 0;
    for await (const row of ownedRows(db, table, owner)) {
      counts[table.name]! += 1;
      progress();
      yield Buffer.from(`${stringifyTagged({ t: table.name, r: row })}\n`);
    }
  }
}

/**
 * Takes a full backup, consistent at one journal sequence, while writes go on: a snapshot of the
 * database is read part by part (the system's rows, then each tenant's), each part streamed through
 * the stream cipher into the blob store; the signed manifest is written last.
 */
export async function takeBackup(core: Core, onProgress: (progress: BackupProgress) => void = () => undefined): Promise<BackupManifest> {
  return core.db.snapshot(async (db) => {
    const head = await db.selectFrom('journal_head').select(['timeline', 'seq']).where('id', '=', 1).executeTakeFirstOrThrow();
    const takenAt = core.now();
    const timeline = head.timeline;
    const seq = Number(head.seq);
    const schema = (await sql<{ name: string }>`select name from kysely_migration order by name desc limit 1`.execute(db)).rows[0]?.name ?? '';
    // A tenant being purged is left out: its key is scheduled for destruction and its rows are going.
    const tenants = (await db.selectFrom('tenants').select('id').where('status', 'not in', SHREDDED_STATUSES).orderBy('id').execute()).map((t) => t.id);
    const backupId = backupIdFor(seq, randomBytes(4).toString('hex'));
    const system = await newSystemKey(core.kms, backupKeyAad(timeline, backupId));
    const progress: BackupProgress = { partsDone: 0, partsTotal: tenants.length + 1, rows: 0, bytes: 0 };
    const parts: BackupPart[] = [];
    for (const owner of [SYSTEM_CHAIN, ...tenants]) {
      const name = owner === SYSTEM_CHAIN ? SYSTEM_PART : owner;
      const { key, keyId, wrappedKey } = await sealingKeyFor(core, owner, system.key, BACKUP);
      const counts: Record<string, number> = {};
      const object = backupObject(timeline, backupId, name);
      const plaintext = Readable.from(
        partLines(db, owner, counts, () => {
          progress.rows += 1;
          if (progress.rows % 1000 === 0) onProgress(progress);
        }),
      );
      const encrypt = createEncryptStream(key, partAad(backupId, name));
      plaintext.once('error', (error) => encrypt.destroy(error));
      const stored = await core.blobs.put(object, plaintext.pipe(encrypt)).finally(() => plaintext.destroy());
      parts.push({ name, object, keyId, wrappedKey, bytes: stored.size, sha256: stored.sha256, rows: counts });
      progress.partsDone += 1;
      progress.bytes += stored.size;
      onProgress(progress);
    }
    const manifest = signManifest(
      { format: 1, backupId, timeline, seq, takenAt, finishedAt: core.now(), schema, wrappedKey: system.wrapped.toString('base64'), parts },
      system.key.macKey,
    );
    await core.blobs.put(manifestObject(timeline, backupId), Readable.from([Buffer.from(JSON.stringify(manifest))]));
    await core.committer.submit(SYSTEM_CHAIN, async (tx, batch) => {
      await tx
        .insertInto('backups')
        .values({ backup_id: backupId, timeline, seq, taken_at: takenAt, finished_at: manifest.finishedAt, bytes: progress.bytes, parts: parts.length, pruned_at: null })
        .execute();
      await auditInTx(tx, batch, core, BACKUP, NO_REQUEST, { tenantId: SYSTEM_CHAIN, action: 'backup.take', target: plainTarget(`backup ${backupId}: sequence ${seq}, ${parts.length} parts, ${progress.bytes} bytes`), result: 'ok' });
    });
    return manifest;
  });
}
