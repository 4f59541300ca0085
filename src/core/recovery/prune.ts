import { backupPrefix, manifestObject } from '../../journal/backup-manifest.js';
import { auditInTx, NO_REQUEST, plainTarget, SYSTEM_CHAIN } from '../audit-events.js';
import type { Actor, Core } from '../context.js';
import { listSegments } from './catalog.js';

const PRUNE: Actor = { kind: 'system', name: 'recovery.prune' };

export interface RetentionSettings {
  /** The point-in-time window: the log is kept this far back from now. */
  segmentRetentionMs: number;
  backupRetentionMs: number;
}

/**
 * Removes what retention no longer keeps, and only what a newer backup covers: the newest backup
 * taken before the window opened (the anchor) stays, with every segment after it; older backups go
 * once past their own retention, and segments whose entries the anchor holds go with them. This is
 * the only code that deletes from the recovery store: shipping and backups only ever add objects.
 */
export async function pruneRecovery(core: Core, settings: RetentionSettings): Promise<{ backups: number; segments: number }> {
  const now = core.now();
  const { timeline } = await core.db.reader.selectFrom('journal_head').select('timeline').where('id', '=', 1).executeTakeFirstOrThrow();
  const backups = await core.db.reader.selectFrom('backups').selectAll().where('timeline', '=', timeline).where('pruned_at', 'is', null).orderBy('seq').execute();
  const anchor = backups.filter((b) => Number(b.taken_at) <= now - settings.segmentRetentionMs).at(-1);
  if (!anchor) return { backups: 0, segments: 0 };
  let prunedBackups = 0;
  for (const backup of backups) {
    if (Number(backup.seq) >= Number(anchor.seq) || Number(backup.taken_at) > now - settings.backupRetentionMs) continue;
    // The manifest first: a backup without one is never used, so a prune cut short leaves no half-backup behind.
    await core.blobs.delete(manifestObject(timeline, backup.backup_id));
    for await (const key of core.blobs.list(`${backupPrefix(timeline)}${backup.backup_id}/`)) await core.blobs.delete(key);
    await core.committer.submit(SYSTEM_CHAIN, (tx) => tx.updateTable('backups').set({ pruned_at: now }).where('backup_id', '=', backup.backup_id).execute());
    prunedBackups += 1;
  }
  const segments = await listSegments(core, timeline);
  let prunedSegments = 0;
  for (let i = 0; i + 1 < segments.length; i++) {
    if (segments[i + 1]!.first - 1 > Number(anchor.seq)) break;
    await core.blobs.delete(segments[i]!.key);
    prunedSegments += 1;
  }
  if (prunedBackups + prunedSegments > 0) {
    await core.committer.submit(SYSTEM_CHAIN, (tx, batch) =>
      auditInTx(tx, batch, core, PRUNE, NO_REQUEST, { tenantId: SYSTEM_CHAIN, action: 'recovery.prune', target: plainTarget(`${prunedBackups} backups and ${prunedSegments} segments before sequence ${Number(anchor.seq)} removed`), result: 'ok' }),
    );
  }
  return { backups: prunedBackups, segments: prunedSegments };
}
