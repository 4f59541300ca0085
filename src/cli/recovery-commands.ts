import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import type { Config } from '../config/schema.js';
import type { RestoreResult, RestoreTarget } from '../core/recovery/restore.js';
import { StrongroomError } from '../errors.js';
import { configFrom, prepareDataDir, type GlobalOptions } from './runtime.js';

const say = (text: string) => process.stdout.write(`${text}\n`);
const progress = (text: string) => process.stderr.write(`\r${text}   `);
const CLI_ACTOR = { kind: 'system', name: 'cli' } as const;
const CLI_META = { requestId: 'cli', sourceIp: 'local' };

/** `--to`: a journal sequence, an ISO 8601 time, or `latest`. */
function parseTarget(text: string): RestoreTarget {
  if (text === 'latest') return { latest: true };
  if (/^\d+$/.test(text)) return { seq: Number(text) };
  const time = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text) || Number.isNaN(time)) throw new StrongroomError('bad_request', `--to takes a sequence number, an ISO 8601 time (2026-11-29T12:00:00Z) or latest, not ${text}`);
  return { time };
}

const describeResult = (r: RestoreResult) =>
  `restored to sequence ${r.seq}${r.at === null ? '' : ` (${new Date(r.at).toISOString()})`} from ${r.backupId === null ? 'the start of the log' : `backup ${r.backupId}`}: ${r.rows} rows, ${r.entries} log entries; ${r.auditChains.length} audit chains verified${r.shredded.length > 0 ? `; left out, purged (keys destroyed): ${r.shredded.join(', ')}` : ''}`;

/** The blob store and the KMS of the configuration: all a disaster recovery starts from. */
async function openSource(config: Config) {
  const { openConfiguredKms } = await import('../core/open-core.js');
  const { openBlobs } = await import('../store/blob/index.js');
  const kms = await openConfiguredKms(config);
  const blobs = await openBlobs(config.blobs, async (miss) => {
    throw new StrongroomError('unavailable', `the ${miss.backend} blob store missed a write`);
  });
  return { kms, blobs, close: () => kms.close() };
}

/** An empty database to restore into: a PostgreSQL URL, or a directory that gets `strongroom.db`. */
async function openTarget(into: string, config: Config) {
  const { openDatabase } = await import('../store/db/open.js');
  if (/^postgres(ql)?:\/\//.test(into)) {
    const pg = config.database.postgres;
    return openDatabase({ driver: 'postgres', url: into, sslMode: pg.sslMode, caFile: pg.caFile, poolSize: 4 });
  }
  const file = join(resolve(into), 'strongroom.db');
  if (existsSync(file)) throw new StrongroomError('conflict', `${file} exists; restore into an empty directory`);
  mkdirSync(resolve(into), { recursive: true, mode: 0o700 });
  return openDatabase({ driver: 'sqlite', file });
}

export function registerRecoveryCommands(program: Command, globals: () => GlobalOptions): void {
  const openCore = async (config: Config) => (await import('../core/open-core.js')).openCore(config);

  program
    .command('backup')
    .description('take a full backup now: consistent at one sequence, one part per tenant, a signed manifest')
    .option('--json', 'print one JSON object')
    .action(async (options: { json?: boolean }) => {
      const config = configFrom(globals());
      const core = await openCore(config);
      try {
        const { takeBackup } = await import('../core/recovery/backup.js');
        const manifest = await takeBackup(core, (p) => progress(`backup: ${p.partsDone}/${p.partsTotal} parts, ${p.rows} rows, ${(p.bytes / 1048576).toFixed(1)} MiB`));
        process.stderr.write('\n');
        const bytes = manifest.parts.reduce((sum, p) => sum + p.bytes, 0);
        if (options.json) say(JSON.stringify({ backupId: manifest.backupId, timeline: manifest.timeline, seq: manifest.seq, parts: manifest.parts.length, bytes }));
        else say(`backup ${manifest.backupId}: sequence ${manifest.seq} of timeline ${manifest.timeline}, ${manifest.parts.length} parts, ${bytes} bytes`);
      } finally {
        await core.close();
      }
    });

  program
    .command('restore')
    .description('restore the whole database into an empty one (--into), or one tenant (--tenant) in place or into an empty database')
    .requiredOption('--to <point>', 'a journal sequence, an ISO 8601 time, or latest')
    .option('--into <dir-or-url>', 'an empty directory (for SQLite) or a PostgreSQL URL')
    .option('--tenant <id>', "only this tenant's data")
    .option('--in-place', "with --tenant: swap the tenant's records and files in the live database; prints an undo bookmark")
    .option('--timeline <id>', 'the history to restore from (default: the live database’s, or the most recent in the blob store)')
    .option('--json', 'print one JSON object')
    .action(async (options: { to: string; into?: string; tenant?: string; inPlace?: boolean; timeline?: string; json?: boolean }) => {
      const target = parseTarget(options.to);
      const config = configFrom(globals());
      if (options.inPlace) {
        if (!options.tenant || options.into) throw new StrongroomError('bad_request', '--in-place restores one --tenant in the live database, not --into another');
        await prepareDataDir(config);
        const core = await openCore(config);
        try {
          const { restoreTenantInPlace } = await import('../core/recovery/tenant-restore.js');
          const result = await restoreTenantInPlace(core, CLI_ACTOR, CLI_META, options.tenant, target);
          if (options.json) say(JSON.stringify(result));
          else say(`tenant ${result.tenantId}: records and files restored to sequence ${result.seq}${result.at ? ` (${result.at})` : ''}\nundo: strongroom restore --tenant ${result.tenantId} --to ${result.undoBookmark} --in-place`);
        } finally {
          await core.close();
        }
        return;
      }
      if (!options.into) throw new StrongroomError('bad_request', 'say where: --into DIR_OR_URL, or --tenant T --in-place');
      const source = await openSource(config);
      try {
        const { latestTimeline } = await import('../core/recovery/catalog.js');
        const timeline = options.timeline ?? (await latestTimeline(source));
        const db = await openTarget(options.into, config);
        try {
          const { restoreDatabase, restoreInto } = await import('../core/recovery/restore.js');
          const restoreOptions = {
            target,
            timeline,
            now: Date.now(),
            onProgress: (p: { phase: string; rows: number; entries: number }) => progress(`restore: ${p.rows} rows from the backup, ${p.entries} log entries replayed`),
          };
          const result = options.tenant ? await restoreInto(source, db, { ...restoreOptions, tenant: options.tenant }) : await restoreDatabase(source, db, restoreOptions);
          process.stderr.write('\n');
          if (options.json) say(JSON.stringify(result));
          else say(describeResult(result));
        } finally {
          await db.close();
        }
      } finally {
        await source.close();
      }
    });

  program
    .command('drill')
    .description('run a restore drill now: restore from the blob store into a scratch database and compare with the live one')
    .option('--tenant [id]', 'one tenant (a random one without an id) instead of the whole database')
    .option('--json', 'print one JSON object')
    .action(async (options: { tenant?: string | boolean; json?: boolean }) => {
      const config = configFrom(globals());
      const core = await openCore(config);
      try {
        const { runDrill } = await import('../core/recovery/drill.js');
        const drill = await runDrill(core, options.tenant === undefined ? 'full' : 'tenant', typeof options.tenant === 'string' ? options.tenant : undefined);
        if (options.json) say(JSON.stringify(drill));
        else say(`${drill.ok ? 'verified' : 'FAILED'}: ${drill.kind} drill ${drill.drillId}${drill.tenantId ? ` of ${drill.tenantId}` : ''} in ${drill.durationMs} ms: ${drill.detail}`);
        process.exitCode = drill.ok ? 0 : 1;
      } finally {
        await core.close();
      }
    });
}
