import { rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Kysely } from 'kysely';
import type { Core } from '../../src/core/context.js';
import { restoreInto, type RestoreResult } from '../../src/core/recovery/restore.js';
import { openDatabase } from '../../src/store/db/open.js';
import { ownedDigest } from '../../src/store/db/owned-rows.js';
import type { Tables } from '../../src/store/db/tables.js';
import { observed } from './machine.js';

export interface TimedRestore {
  result: RestoreResult;
  /** The whole `restoreInto` call. */
  seconds: number;
  /** From the start to the last backup row loaded; then to the last entry replayed; then to the end (heads, checks). */
  loadSeconds: number;
  replaySeconds: number;
  checkSeconds: number;
  /** Entries per second between the first and the last batch replayed: the replay alone; null under two batches. */
  steadyReplayRate: number | null;
  /** CPU other processes used meanwhile, in cores; null without /proc. */
  othersCores: number | null;
  /** The restored SQLite file and its WAL. */
  restoredBytes: number;
  /** Tenants whose restored rows differ from the expected digest. */
  differing: string[];
}

/** Bytes of a SQLite database: its file and its WAL. */
export function databaseBytes(file: string): number {
  const size = (path: string) => {
    try {
      return statSync(path).size;
    } catch {
      return 0;
    }
  };
  return size(file) + size(`${file}-wal`);
}

/** Each tenant's row digest, to compare a restore with its source. */
export async function tenantDigests(db: Kysely<Tables>, tenantIds: readonly string[]): Promise<Map<string, string>> {
  const digests = new Map<string, string>();
  for (const tenantId of tenantIds) digests.set(tenantId, await ownedDigest(db, tenantId));
  return digests;
}

/**
 * Restores the latest shipped entry (one tenant's rows, or every row) into `file`, a fresh SQLite
 * database, timing the restore and its phases; then compares each expected tenant's digest, and
 * removes the file's folder.
 */
export async function timedRestore(core: Core, file: string, timeline: string, expected: Map<string, string>, tenant?: string): Promise<TimedRestore> {
  const target = await openDatabase({ driver: 'sqlite', file });
  try {
    const marks = { started: performance.now(), loaded: 0, replayed: 0 };
    const batches: { at: number; entries: number }[] = [];
    const restore = await observed(() =>
      restoreInto(core, target, {
        target: { latest: true },
        timeline,
        tenant,
        now: Date.now(),
        onProgress: ({ phase, entries }) => {
          if (phase === 'backup') marks.loaded = performance.now();
          else batches.push({ at: (marks.replayed = performance.now()), entries });
        },
      }),
    );
    const ended = marks.started + restore.seconds * 1000;
    marks.loaded ||= marks.started;
    marks.replayed ||= marks.loaded;
    const [first, last] = [batches[0], batches.at(-1)];
    const restored = await tenantDigests(target.writer, [...expected.keys()]);
    return {
      result: restore.value,
      seconds: restore.seconds,
      loadSeconds: (marks.loaded - marks.started) / 1000,
      replaySeconds: (marks.replayed - marks.loaded) / 1000,
      checkSeconds: (ended - marks.replayed) / 1000,
      steadyReplayRate: first && last && last.entries > first.entries ? ((last.entries - first.entries) * 1000) / (last.at - first.at) : null,
      othersCores: restore.othersCores,
      restoredBytes: databaseBytes(file),
      differing: [...expected].filter(([id, digest]) => restored.get(id) !== digest).map(([id]) => id),
    };
  } finally {
    await target.close();
    rmSync(dirname(file), { recursive: true, force: true });
  }
}
