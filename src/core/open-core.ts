import { sql } from 'kysely';
import { Keyring } from '../crypto/keyring.js';
import type { Config } from '../config/schema.js';
import { openKms, type Kms } from '../kms/index.js';
import { resolveSecrets } from '../secrets/resolve.js';
import { openSecretStore, SYSTEM_SECRETS_KEY, type SecretKeyUse, type SecretStore } from '../secrets/store.js';
import { GroupCommitter } from '../store/db/group-commit.js';
import { openDatabase, type Database, type DatabaseOptions } from '../store/db/open.js';
import type { Actor, Core } from './context.js';
import { CurrentDataKeys } from './current-data-keys.js';
import { auditKeyUse, auditSystemKeyUse } from './audit-events.js';
import { dataKeyUnwrapper } from './tenant-keys.js';
import { queueRepair } from './files/blob-repairs.js';
import { openBlobs } from '../store/blob/index.js';

const DAY = 86_400_000;
import type { ReplicatedBlobStore } from '../store/blob/replicated.js';

export function databaseOptions(config: Config): DatabaseOptions {
  const { database } = config;
  return database.driver === 'sqlite'
    ? { driver: 'sqlite', file: database.sqlite.file! }
    : { driver: 'postgres', url: database.postgres.url ?? '', sslMode: database.postgres.sslMode, caFile: database.postgres.caFile, poolSize: database.postgres.poolSize };
}

/** Milliseconds since the epoch by the database server's clock. */
async function databaseClock(db: Database): Promise<number> {
  const query =
    db.dialect === 'postgres'
      ? sql<{ ms: number }>`select (extract(epoch from clock_timestamp()) * 1000)::bigint as ms`
      : sql<{ ms: number }>`select cast(unixepoch('subsec') * 1000 as integer) as ms`;
  return Number((await query.execute(db.reader)).rows[0]!.ms);
}

/** The configured KMS provider. */
export const openConfiguredKms = (config: Config): Promise<Kms> => openKms(config.kms);

/**
 * Opens the KMS, then the database (migrating it) with the configuration's `secret:NAME` references
 * resolved through the KMS, and the keyring: everything the domain needs.
 */
export async function openCore(config: Config, now: () => number = Date.now, databaseNow?: () => Promise<number>): Promise<Core & { close(): Promise<void> }> {
  const kms = await openConfiguredKms(config);
  // Secrets are opened before the database (its URL may be one); their key uses are audited once it is open.
  const secretUses: SecretKeyUse[] = [];
  let db: Database;
  let blobs: ReplicatedBlobStore;
  try {
    const store = openSecretStore({ file: config.secrets.file!, kms, now, audit: async (use) => void secretUses.push(use) });
    const resolved = await resolveSecrets(config, store);
    db = await openDatabase(databaseOptions(resolved));
    // Replica misses are queued in the database, through the core made below.
    blobs = await openBlobs(resolved.blobs, (miss) => queueRepair(core, miss)).catch(async (error: unknown) => {
      await db.close();
      throw error;
    });
  } catch (error) {
    await kms.close();
    throw error;
  }
  const committer = new GroupCommitter(db.writer, db.dialect, config.database.groupCommitMaxBatch, now);
  const keyring = new Keyring<Actor>({
    ttlMs: config.keys.dataKeyCacheSeconds * 1000,
    maxEntries: config.keys.dataKeyCacheEntries,
    clock: now,
    unwrap: dataKeyUnwrapper(db, kms, (tenantId, use, caller) => auditKeyUse(core, tenantId, use, caller)),
  });
  const currentDataKeys = new CurrentDataKeys(db, config.keys.dataKeyCacheSeconds * 1000, config.keys.dataKeyCacheEntries, now);
  const core: Core & { close(): Promise<void> } = {
    db,
    kms,
    keyring,
    currentDataKeys,
    committer,
    limits: config.records,
    blobs,
    files: { maxBytes: config.files.maxBytes, retentionMs: config.files.retentionDays * DAY, signedUrlMaxSeconds: config.files.signedUrlMaxSeconds },
    recovery: { segmentMaxBytes: config.recovery.segmentMaxBytes },
    lifecycle: {
      purgeAfterMs: config.lifecycle.purgeAfterDays * DAY,
      exportRetentionMs: config.lifecycle.exportRetentionDays * DAY,
      destroyWaitMs: config.kms.destroyWaitSeconds * 1000,
      ageOut: { segmentRetentionMs: config.recovery.segmentRetentionDays * DAY, backupRetentionMs: config.recovery.backupRetentionDays * DAY, backupIntervalMs: config.recovery.backupIntervalHours * 3_600_000 },
    },
    databaseNow: databaseNow ?? (() => databaseClock(db)),
    now,
    async close() {
      await committer.close();
      keyring.clear();
      await kms.close();
      await db.close();
    },
  };
  try {
    for (const use of secretUses) await auditSystemKeyUse(core, { keyName: SYSTEM_SECRETS_KEY, subject: `secret:${use.name}`, purpose: use.purpose, kekVersion: use.kekVersion });
  } catch (error) {
    await core.close();
    throw error;
  }
  return core;
}

/** The secret store, with every use of the system key recorded in the system audit chain. */
export function auditedSecretStore(core: Core, file: string): SecretStore {
  return openSecretStore({
    file,
    kms: core.kms,
    now: core.now,
    audit: (use) => auditSystemKeyUse(core, { keyName: SYSTEM_SECRETS_KEY, subject: `secret:${use.name}`, purpose: use.purpose, kekVersion: use.kekVersion }),
  });
}
