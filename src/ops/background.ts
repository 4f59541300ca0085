import type { Config } from '../config/schema.js';
import { expireGrants } from '../core/access-requests.js';
import type { Core } from '../core/context.js';
import { reencryptAll, rotateDueDataKeys } from '../core/data-key-rotation.js';
import { runRepairs, scrubAll } from '../core/files/blob-repairs.js';
import { applyRetention } from '../core/files/retention.js';
import { forgetExpiredUrlUses } from '../core/files/signed-urls.js';
import { buildPendingExports, expireExports } from '../core/lifecycle/exports.js';
import { jobProgress } from '../core/job-progress.js';
import { deliverDue, expandOutbox, type Transports } from './notify/deliveries.js';
import { configuredTransports } from './notify/transports.js';
import { REWRAP_JOB, rewrapAll, rotateDueKeys } from '../core/key-rotation.js';
import { kekName } from '../core/tenant-keys.js';
import { auditedSecretStore } from '../core/open-core.js';
import { SYSTEM_SECRETS_KEY } from '../secrets/store.js';
import type { Job } from './jobs.js';
import { shipContinuously } from './ship-loop.js';
import { takeBackup } from '../core/recovery/backup.js';
import { runDrill } from '../core/recovery/drill.js';
import { pruneRecovery } from '../core/recovery/prune.js';
import { SHREDDED_STATUSES } from '../core/tenants.js';
import { runDuePurges } from '../core/lifecycle/purge.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** The server's background jobs, as the configuration sets them. */
export function backgroundJobs(config: Config): Job[] {
  const jobs: Job[] = [
    {
      // Grants also expire when next used; this puts the expiry of unused ones in the audit log on time.
      name: 'access-grants.expire',
      everyMs: 15 * SECOND,
      run: async (core) => `${await expireGrants(core)} grants expired`,
    },
    {
      // A rotation cut short (kill -9, a lost lease) is finished here.
      name: 'keys.rewrap-resume',
      everyMs: 10 * MINUTE,
      run: async (core) => {
        const last = await jobProgress(core, REWRAP_JOB);
        if (!last || last.finishedAt !== null || core.now() - last.updatedAt < MINUTE) return 'nothing to resume';
        return `${await rewrapAll(core)} data keys re-wrapped`;
      },
    },
    {
      // Purges due by the database's clock; one cut short is finished on the next run.
      name: 'lifecycle.purge',
      everyMs: 10 * MINUTE,
      firstRunDelayMs: MINUTE,
      run: (core) => runDuePurges(core),
    },
    {
      name: 'kms.destroy-due',
      everyMs: HOUR,
      run: async (core) => `${await core.kms.destroyDueVersions()} key versions destroyed`,
    },
  ];
  jobs.push({
    // Runs continuously while it holds its lease: the change log reaches the blob store within the interval.
    name: 'journal.ship',
    everyMs: 0,
    leaseMs: 3 * SECOND,
    run: (core, signal) => shipContinuously(core, config.recovery.shipIntervalMs, signal),
  });
  const { recovery } = config;
  jobs.push(
    {
      name: 'recovery.backup',
      everyMs: recovery.backupIntervalHours * HOUR,
      // A new deployment's first backup, once it has something in it.
      firstRunDelayMs: 10 * MINUTE,
      run: async (core) => {
        const backup = await takeBackup(core);
        return `backup ${backup.backupId} at sequence ${backup.seq}: ${backup.parts.length} parts`;
      },
    },
    {
      // The only job that deletes from the recovery store.
      name: 'recovery.prune',
      everyMs: 6 * HOUR,
      firstRunDelayMs: 6 * HOUR,
      run: async (core) => {
        const pruned = await pruneRecovery(core, { segmentRetentionMs: recovery.segmentRetentionDays * DAY, backupRetentionMs: recovery.backupRetentionDays * DAY });
        return `${pruned.backups} backups and ${pruned.segments} segments removed`;
      },
    },
  );
  for (const [kind, hours] of [['full', recovery.drillFullHours], ['tenant', recovery.drillTenantHours]] as const) {
    if (hours > 0) {
      jobs.push({
        name: `recovery.drill-${kind}`,
        everyMs: hours * HOUR,
        // The first drill once a backup exists to restore.
        firstRunDelayMs: Math.max(hours * HOUR, 15 * MINUTE),
        run: async (core) => {
          const drill = await runDrill(core, kind);
          return `${drill.ok ? 'verified' : 'FAILED'}: ${drill.detail}`;
        },
      });
    }
  }
  let transports: Transports | null = null;
  jobs.push(
    {
      // Every notification is in the outbox from its event's transaction; this sends it, with retries.
      name: 'notifications.deliver',
      everyMs: 2 * SECOND,
      // Renewed every 2 s while a run lasts: after a crash, another instance (or the restarted one) resumes within 6 s.
      leaseMs: 6 * SECOND,
      run: async (core) => {
        transports ??= await configuredTransports(core, config);
        const expanded = await expandOutbox(core, transports);
        const r = await deliverDue(core, transports, {
          maxAttempts: config.notifications.maxAttempts,
          baseDelayMs: config.notifications.baseDelaySeconds * SECOND,
          maxDelayMs: config.notifications.maxDelaySeconds * SECOND,
        });
        return `${expanded} notifications queued; ${r.delivered} delivered, ${r.failed} to retry, ${r.dead} dead letters`;
      },
    },
    {
      // Replica copies missed while a backend was down, made as soon as it is back.
      name: 'blobs.repair',
      everyMs: 30 * SECOND,
      run: async (core) => {
        const { repaired, pending } = await runRepairs(core);
        return `${repaired} copies repaired, ${pending} pending`;
      },
    },
    {
      name: 'files.retention',
      everyMs: HOUR,
      run: async (core) => {
        const r = await applyRetention(core);
        const uses = await forgetExpiredUrlUses(core);
        return `expired ${r.fileVersions} file versions, ${r.files} deleted files, ${r.recordVersions} record versions, ${r.records} deleted records; ${r.blobs} blobs and ${uses} used URL nonces removed`;
      },
    },
  );
  jobs.push(
    {
      // Exports asked for are built within seconds; one cut short (kill -9, a lost lease) is built again from the start.
      name: 'exports.build',
      everyMs: 2 * SECOND,
      run: async (core, signal) => {
        const r = await buildPendingExports(core, signal);
        return `${r.built} exports built, ${r.failures.length} failed${r.failures.length ? `: ${r.failures.join('; ')}` : ''}`;
      },
    },
    {
      name: 'exports.expire',
      everyMs: HOUR,
      run: async (core) => `${await expireExports(core)} export archives deleted`,
    },
  );
  if (config.blobs.scrubIntervalHours > 0) {
    jobs.push({
      name: 'blobs.scrub',
      everyMs: config.blobs.scrubIntervalHours * HOUR,
      run: async (core) => {
        const s = await scrubAll(core);
        return `${s.objects} objects verified: ${s.repaired} copies repaired, ${s.unavailable} unavailable, ${s.unrecoverable} unrecoverable`;
      },
    });
  }
  jobs.push({
    // Re-encryption after a data-key rotation, carried on until every rotated-out key is retired.
    name: 'keys.reencrypt',
    everyMs: 10 * MINUTE,
    run: async (core) => `${await reencryptAll(core, reencryptOptions(config))} rows re-encrypted`,
  });
  if (config.keys.dataKeyRotationDays > 0) {
    const maxAgeMs = config.keys.dataKeyRotationDays * DAY;
    jobs.push({
      name: 'keys.rotate-data-due',
      everyMs: 6 * HOUR,
      run: async (core) => {
        const rotated = await rotateDueDataKeys(core, maxAgeMs);
        return `${rotated.length} data keys rotated; ${rotated.length > 0 ? await reencryptAll(core, reencryptOptions(config)) : 0} rows re-encrypted`;
      },
    });
  }
  const days = config.keys.kekRotationDays;
  if (days > 0) {
    jobs.push({
      name: 'keys.rotate-due',
      everyMs: 6 * HOUR,
      run: async (core) => rotateDue(core, config, days * DAY),
    });
  }
  return jobs;
}

const reencryptOptions = (config: Config) => ({ batchRows: config.keys.reencryptBatchRows, pauseMs: config.keys.reencryptPauseMs });

/** Rotates every KEK whose primary version is older than `maxAgeMs`, then re-wraps what they wrap. */
async function rotateDue(core: Core, config: Config, maxAgeMs: number): Promise<string> {
  const tenants = await core.db.reader.selectFrom('tenants').select('id').where('status', 'not in', SHREDDED_STATUSES).orderBy('id').execute();
  const rotated = await rotateDueKeys(core, [...tenants.map((t) => kekName(t.id)), SYSTEM_SECRETS_KEY], maxAgeMs);
  const secrets = rotated.includes(SYSTEM_SECRETS_KEY) ? await auditedSecretStore(core, config.secrets.file!).rewrap() : 0;
  const dataKeys = rotated.length > 0 ? await rewrapAll(core) : 0;
  return `${rotated.length} keys rotated; ${dataKeys} data keys and ${secrets} secrets re-wrapped`;
}
