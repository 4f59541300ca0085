import { randomUUID } from 'node:crypto';
import { SYSTEM_CHAIN } from '../core/audit-events.js';
import type { Core } from '../core/context.js';
import type { BatchOperation } from '../store/db/group-commit.js';

/** A background job: idempotent, so that a run cut short by a crash is simply run again. */
export interface Job {
  name: string;
  everyMs: number;
  /** Overrides the runner's lease length: a frequent, short job takes over sooner after its instance died. */
  leaseMs?: number;
  /** How long after the job is first scheduled (a new deployment) its first run waits; 0 by default. */
  firstRunDelayMs?: number;
  /**
   * Does the work; returns a one-line summary for the schedule table and the log. `signal` aborts
   * when the runner stops or the lease is lost, so a long run can end early and cleanly.
   */
  run(core: Core, signal: AbortSignal): Promise<string>;
}

export interface JobRunner {
  /** Runs a job now, if no instance holds it, and returns its summary; null when another holds it. */
  runNow(name: string): Promise<string | null>;
  stop(): Promise<void>;
}

export interface JobRunnerOptions {
  tickMs?: number;
  /** How long a lease lasts before another instance may take the job over; renewed while running. */
  leaseMs?: number;
  log?: (level: 'info' | 'error', fields: Record<string, unknown>, message: string) => void;
}


/**
 * Runs each job when it is due, on one instance at a time: a run starts only by taking the job's
 * lease in the database with a conditional update, so instances sharing it never run a job twice
 * at once, and a lease left by a killed instance expires. Each run's end, result and next time are
 * recorded.
 */
export function startJobRunner(core: Core, jobs: Job[], options: JobRunnerOptions = {}): JobRunner {
  const owner = randomUUID();
  const tickMs = options.tickMs ?? 1000;
  const leaseMs = options.leaseMs ?? 60_000;
  const log = options.log ?? (() => undefined);
  const byName = new Map(jobs.map((job) => [job.name, job]));
  const running = new Set<Promise<unknown>>();
  const aborts = new Set<AbortController>();
  let stopped = false;

  // Through the group committer, which owns the writer connection, in the system's scope: no tenant's chain moves.
  const submit = <T>(op: BatchOperation<T>) => core.committer.submit(SYSTEM_CHAIN, op);

  async function ensureRows(): Promise<void> {
    await submit(async (tx) => {
      for (const job of jobs) {
        await tx
          .insertInto('job_schedule')
          .values({ name: job.name, next_run_at: core.now() + (job.firstRunDelayMs ?? 0) })
          .onConflict((oc) => oc.column('name').doNothing())
          .execute();
      }
    });
  }

  const leaseOf = (name: string) => byName.get(name)?.leaseMs ?? leaseMs;

  async function takeLease(name: string, onlyIfDue: boolean): Promise<boolean> {
    return submit(async (tx) => {
      const now = core.now();
      let update = tx
        .updateTable('job_schedule')
        .set({ lease_owner: owner, lease_until: now + leaseOf(name), last_started_at: now })
        .where('name', '=', name)
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]));
      if (onlyIfDue) update = update.where('next_run_at', '<=', now);
      return Number((await update.executeTakeFirst()).numUpdatedRows) === 1;
    });
  }

  async function execute(job: Job): Promise<string> {
    const abort = new AbortController();
    aborts.add(abort);
    const renew = setInterval(() => {
      void submit(async (tx) => {
        const renewed = await tx
          .updateTable('job_schedule')
          .set({ lease_until: core.now() + leaseOf(job.name) })
          .where('name', '=', job.name)
          .where('lease_owner', '=', owner)
          .executeTakeFirst();
        if (Number(renewed.numUpdatedRows) === 0) abort.abort();
      }).catch(() => undefined);
    }, Math.max(1, Math.floor(leaseOf(job.name) / 3)));
    let result: string;
    let ok = true;
    try {
      result = await job.run(core, abort.signal);
      log('info', { job: job.name, result }, 'job finished');
    } catch (error) {
      ok = false;
      result = `failed: ${(error as Error).message}`;
      log('error', { job: job.name, err: (error as Error).message }, 'job failed; it runs again when next due');
    } finally {
      clearInterval(renew);
      aborts.delete(abort);
    }
    await submit(async (tx) => {
      const now = core.now();
      await tx
        .updateTable('job_schedule')
        .set({ lease_owner: null, lease_until: null, last_finished_at: now, last_result: result, last_ok: ok ? 1 : 0, next_run_at: now + job.everyMs })
        .where('name', '=', job.name)
        .where('lease_owner', '=', owner)
        .execute();
    });
    return result;
  }

  const track = <T>(promise: Promise<T>): Promise<T> => {
    running.add(promise);
    void promise.finally(() => running.delete(promise)).catch(() => undefined);
    return promise;
  };

  const ready = ensureRows();
  const busy = new Set<string>();
  async function tick(): Promise<void> {
    await ready;
    for (const job of jobs) {
      if (stopped || busy.has(job.name)) continue;
      busy.add(job.name);
      void track(
        (async () => {
          try {
            // A continuous job (everyMs 0) starts its next run as soon as one ends, not at the next tick.
            while (!stopped && (await takeLease(job.name, true))) {
              await execute(job);
              if (job.everyMs > 0) break;
            }
          } finally {
            busy.delete(job.name);
          }
        })(),
      ).catch((error: Error) => log('error', { job: job.name, err: error.message }, 'job scheduling failed'));
    }
  }
  const timer = setInterval(() => void tick(), tickMs);
  timer.unref();

  return {
    async runNow(name) {
      const job = byName.get(name);
      if (!job) throw new Error(`no job named ${name}`);
      await ready;
      return track((async () => ((await takeLease(name, false)) ? execute(job) : null))());
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      for (const abort of aborts) abort.abort();
      await Promise.allSettled([...running]);
    },
  };
}
