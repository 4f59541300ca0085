import type { Core } from './context.js';
import { SYSTEM_CHAIN } from './audit-events.js';

/** Progress of a long job (a re-wrap, a re-encryption), kept in the database so another process can show it. */
export interface JobProgress {
  name: string;
  startedAt: number;
  updatedAt: number;
  finishedAt: number | null;
  total: number;
  done: number;
  /** Milliseconds left at the rate so far; null before the first item or once finished. */
  etaMs: number | null;
}

/** Records how far the named job has come, for `keys status` and for resuming it. */
export async function recordProgress(core: Core, name: string, run: { startedAt: number; total: number; done: number; finished: boolean }): Promise<void> {
  const row = { started_at: run.startedAt, updated_at: core.now(), finished_at: run.finished ? core.now() : null, total: run.total, done: run.done };
  // Through the group committer, which owns the writer connection; no tenant's chain moves.
  await core.committer.submit(SYSTEM_CHAIN, (tx) =>
    tx
      .insertInto('job_runs')
      .values({ name, ...row })
      .onConflict((oc) => oc.column('name').doUpdateSet(row))
      .execute(),
  );
}

/** The named job's last recorded progress, with an ETA at the rate so far. */
export async function jobProgress(core: Core, name: string): Promise<JobProgress | null> {
  const row = await core.db.reader.selectFrom('job_runs').selectAll().where('name', '=', name).executeTakeFirst();
  if (!row) return null;
  const [startedAt, updatedAt, done, total] = [row.started_at, row.updated_at, row.done, row.total].map(Number) as [number, number, number, number];
  const finishedAt = row.finished_at === null ? null : Number(row.finished_at);
  const etaMs = finishedAt === null && done > 0 ? Math.round(((updatedAt - startedAt) / done) * (total - done)) : null;
  return { name, startedAt, updatedAt, finishedAt, total, done, etaMs };
}

