import { randomBytes } from 'node:crypto';
import { sql, type Kysely, type Migration } from 'kysely';

/**
 * One set of migrations for SQLite and PostgreSQL. Column types are chosen to mean the same on both:
 * `bigint` holds millisecond times and sequence numbers, `blob` maps to bytea on PostgreSQL.
 */
type Dialect = 'sqlite' | 'postgres';

/** A timeline names one history of the journal; a whole-database restore starts a new one. */
export const newTimelineId = () => randomBytes(8).toString('hex');

const binary = (dialect: Dialect) => (dialect === 'postgres' ? 'bytea' : 'blob');

function initial(dialect: Dialect): Migration {
  const bin = binary(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('tenants')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('kek_name', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('tenant_heads')
        .addColumn('tenant_id', 'text', (c) => c.primaryKey())
        .addColumn('audit_seq', 'bigint', (c) => c.notNull())
        .addColumn('audit_hash', bin, (c) => c.notNull())
        .addColumn('change_seq', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('data_keys')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('key_id', 'integer', (c) => c.notNull())
        .addColumn('purpose', 'text', (c) => c.notNull())
        .addColumn('wrapped', bin, (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('data_keys_pk', ['tenant_id', 'key_id'])
        .execute();
      await db.schema
        .createTable('members')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('member_id', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('issuer', 'text')
        .addColumn('subject', 'text')
        .addColumn('email_enc', bin)
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('members_pk', ['tenant_id', 'member_id'])
        .execute();
      await db.schema
        .createTable('api_keys')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('secret_hash', bin, (c) => c.notNull())
        .addColumn('scopes', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('revoked_at', 'bigint')
        .addPrimaryKeyConstraint('api_keys_pk', ['tenant_id', 'key_id'])
        .execute();
      await db.schema.createIndex('api_keys_key_id').unique().on('api_keys').column('key_id').execute();
      await db.schema
        .createTable('collections')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('spec', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('collections_pk', ['tenant_id', 'name'])
        .execute();
      await db.schema
        .createTable('records')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('collection', 'text', (c) => c.notNull())
        .addColumn('record_key', bin, (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('body', bin, (c) => c.notNull())
        .addColumn('deleted', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('records_pk', ['tenant_id', 'collection', 'record_key'])
        .execute();
      await db.schema
        .createTable('record_versions')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('collection', 'text', (c) => c.notNull())
        .addColumn('record_key', bin, (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('op', 'text', (c) => c.notNull())
        .addColumn('body', bin, (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('record_versions_pk', ['tenant_id', 'collection', 'record_key', 'version'])
        .execute();
      await db.schema
        .createTable('record_index')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('collection', 'text', (c) => c.notNull())
        .addColumn('field', 'text', (c) => c.notNull())
        .addColumn('record_key', bin, (c) => c.notNull())
        .addColumn('token', bin, (c) => c.notNull())
        .addPrimaryKeyConstraint('record_index_pk', ['tenant_id', 'collection', 'record_key', 'field'])
        .execute();
      await db.schema
        .createIndex('record_index_lookup')
        .on('record_index')
        .columns(['tenant_id', 'collection', 'field', 'token'])
        .execute();
      await db.schema
        .createTable('audit_events')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('target', bin, (c) => c.notNull())
        .addColumn('result', 'text', (c) => c.notNull())
        .addColumn('request_id', 'text', (c) => c.notNull())
        .addColumn('source_ip', 'text', (c) => c.notNull())
        .addColumn('prev_hash', bin, (c) => c.notNull())
        .addColumn('hash', bin, (c) => c.notNull())
        .addPrimaryKeyConstraint('audit_events_pk', ['tenant_id', 'seq'])
        .execute();
      await db.schema
        .createTable('change_log')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('op', 'text', (c) => c.notNull())
        .addColumn('collection', 'text', (c) => c.notNull())
        .addColumn('record_key', bin, (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('payload', bin, (c) => c.notNull())
        .addPrimaryKeyConstraint('change_log_pk', ['tenant_id', 'seq'])
        .execute();
    },
  };
}

/** Members are found by their identity, and invitations by a keyed hash of the invited e-mail. */
function memberIdentity(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('members').addColumn('email_token', binary(dialect)).execute();
      await db.schema.createIndex('members_identity').on('members').columns(['tenant_id', 'issuer', 'subject']).execute();
      await db.schema.createIndex('members_email').on('members').columns(['tenant_id', 'email_token']).execute();
    },
  };
}

/** A tenant may require its members to sign in with a second factor. */
const tenantMfaPolicy: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('tenants').addColumn('require_mfa', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  },
};

/**
 * Operators ask a tenant for time-boxed access to its data; the request, its decision and its end
 * are rows here (and events in the tenant's audit log). Notifications wait in an outbox written in
 * the same transaction as the event that causes them, so none is lost or sent for a rolled-back change.
 */
function accessRequests(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('access_requests')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('request_id', 'text', (c) => c.notNull())
        .addColumn('operator_id', 'text', (c) => c.notNull())
        .addColumn('operator_roles', 'text', (c) => c.notNull())
        .addColumn('scope', 'text', (c) => c.notNull())
        .addColumn('duration_seconds', 'integer', (c) => c.notNull())
        .addColumn('break_glass', 'integer', (c) => c.notNull())
        .addColumn('details_enc', binary(dialect), (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('requested_at', 'bigint', (c) => c.notNull())
        .addColumn('decided_at', 'bigint')
        .addColumn('decided_by', 'text')
        .addColumn('expires_at', 'bigint')
        .addColumn('ended_at', 'bigint')
        .addPrimaryKeyConstraint('access_requests_pk', ['tenant_id', 'request_id'])
        .execute();
      await db.schema.createIndex('access_requests_operator').on('access_requests').columns(['tenant_id', 'operator_id', 'status']).execute();
      await db.schema.createIndex('access_requests_expiry').on('access_requests').columns(['status', 'expires_at']).execute();
      await db.schema
        .createTable('outbox')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('tenant_id', 'text')
        .addColumn('event_type', 'text', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('outbox_due').on('outbox').columns(['status', 'next_attempt_at']).execute();
    },
  };
}

/** Progress of long jobs (a rewrap after a rotation), so that another process can show it and its ETA. */
const jobRuns: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('job_runs')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('started_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('finished_at', 'bigint')
      .addColumn('total', 'bigint', (c) => c.notNull())
      .addColumn('done', 'bigint', (c) => c.notNull())
      .execute();
  },
};

/**
 * The background jobs' schedule: when each runs next, and a lease so that of several instances
 * sharing the database only one runs a job at a time.
 */
const jobSchedule: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('job_schedule')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('next_run_at', 'bigint', (c) => c.notNull())
      .addColumn('lease_owner', 'text')
      .addColumn('lease_until', 'bigint')
      .addColumn('last_started_at', 'bigint')
      .addColumn('last_finished_at', 'bigint')
      .addColumn('last_result', 'text')
      .addColumn('last_ok', 'integer')
      .execute();
  },
};

/** The system audit chain's head exists from the start, so that its first append needs no insert race. */
const systemChain: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`insert into tenant_heads (tenant_id, audit_seq, audit_hash, change_seq) values ('_system', 0, ${Buffer.alloc(32)}, 0)`.execute(db);
  },
};

/** A data key is retired once nothing but immutable history (audit targets, the change log) is sealed under it. */
const dataKeyRetirement: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('data_keys').addColumn('retired_at', 'bigint').execute();
  },
};

/**
 * Files: the current state per path, every version (a tombstone for a delete) with the blob that
 * holds its ciphertext, folder tokens for listing by prefix, the replicas' repair queue, and the
 * single-use signed URLs already used.
 */
function files(dialect: Dialect): Migration {
  const bin = binary(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('files')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('path_key', bin, (c) => c.notNull())
        .addColumn('version', 'bigint', (c) => c.notNull())
        .addColumn('deleted', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('files_pk', ['tenant_id', 'path_key'])
        .execute();
      await db.schema
        .createTable('file_versions')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('path_key', bin, (c) => c.notNull())
        .addColumn('version', 'bigint', (c) => c.notNull())
        .addColumn('op', 'text', (c) => c.notNull())
        .addColumn('object_key', 'text')
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('stored_size', 'bigint', (c) => c.notNull())
        .addColumn('stored_sha256', 'text')
        .addColumn('meta_enc', bin, (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('noncurrent_since', 'bigint')
        .addPrimaryKeyConstraint('file_versions_pk', ['tenant_id', 'path_key', 'version'])
        .execute();
      await db.schema.createIndex('file_versions_object').on('file_versions').column('object_key').execute();
      await db.schema.createIndex('file_versions_noncurrent').on('file_versions').column('noncurrent_since').execute();
      await db.schema
        .createTable('file_folders')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('folder_token', bin, (c) => c.notNull())
        .addColumn('path_key', bin, (c) => c.notNull())
        .addPrimaryKeyConstraint('file_folders_pk', ['tenant_id', 'folder_token', 'path_key'])
        .execute();
      await db.schema
        .createTable('blob_repairs')
        .addColumn('object_key', 'text', (c) => c.notNull())
        .addColumn('backend', 'text', (c) => c.notNull())
        .addColumn('op', 'text', (c) => c.notNull())
        .addColumn('enqueued_at', 'bigint', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull())
        .addColumn('last_error', 'text')
        .addPrimaryKeyConstraint('blob_repairs_pk', ['object_key', 'backend', 'op'])
        .execute();
      await db.schema
        .createTable('signed_url_uses')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('nonce', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('signed_url_uses_pk', ['tenant_id', 'nonce'])
        .execute();
    },
  };
}

/**
 * Notification delivery: webhook endpoints (their signing secrets wrapped by the KMS), one delivery
 * per notification and destination, and a log of every attempt. The outbox row is marked once its
 * deliveries exist.
 */
function notifications(dialect: Dialect): Migration {
  const bin = binary(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('outbox').addColumn('expanded_at', 'bigint').execute();
      await db.schema
        .createTable('webhooks')
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('webhook_id', 'text', (c) => c.notNull())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('events', 'text', (c) => c.notNull())
        .addColumn('secret_wrapped', bin, (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('webhooks_pk', ['owner', 'webhook_id'])
        .execute();
      await db.schema
        .createTable('deliveries')
        .addColumn('delivery_id', 'text', (c) => c.primaryKey())
        .addColumn('notification_id', 'text', (c) => c.notNull())
        .addColumn('tenant_id', 'text')
        .addColumn('event_type', 'text', (c) => c.notNull())
        .addColumn('channel', 'text', (c) => c.notNull())
        .addColumn('target', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull())
        .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
        .addColumn('last_error', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('delivered_at', 'bigint')
        .execute();
      await db.schema.createIndex('deliveries_due').on('deliveries').columns(['status', 'next_attempt_at']).execute();
      await db.schema
        .createTable('delivery_attempts')
        .addColumn('delivery_id', 'text', (c) => c.notNull())
        .addColumn('attempt', 'integer', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('ok', 'integer', (c) => c.notNull())
        .addColumn('detail', 'text', (c) => c.notNull())
        .addColumn('duration_ms', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('delivery_attempts_pk', ['delivery_id', 'attempt'])
        .execute();
    },
  };
}

/**
 * The change log becomes a journal of write statements in one sequence for the whole database
 * (journal_head), on a timeline that a whole-database restore forks; ship_head is how far the
 * shipper has copied it to the blob store, the hash of the last segment it wrote, and the lease that
 * lets one shipper at a time write segments. `backups` and `restore_drills` record what was taken
 * and what each restore drill found.
 */
function journal(dialect: Dialect): Migration {
  const bin = binary(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.dropTable('change_log').execute();
      await db.schema.alterTable('tenant_heads').dropColumn('change_seq').execute();
      await db.schema
        .createTable('change_log')
        .addColumn('seq', 'bigint', (c) => c.primaryKey())
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('statements', bin, (c) => c.notNull())
        .addColumn('continued', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex('change_log_tenant').on('change_log').columns(['tenant_id', 'seq']).execute();
      await db.schema
        .createTable('journal_head')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('timeline', 'text', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .execute();
      await sql`insert into journal_head (id, timeline, seq) values (1, ${newTimelineId()}, 0)`.execute(db);
      await db.schema
        .createTable('ship_head')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('hash', bin, (c) => c.notNull())
        .addColumn('shipped_at', 'bigint', (c) => c.notNull())
        .addColumn('lease_owner', 'text')
        .addColumn('lease_until', 'bigint')
        .execute();
      await sql`insert into ship_head (id, seq, hash, shipped_at) values (1, 0, ${Buffer.alloc(32)}, 0)`.execute(db);
      await db.schema
        .createTable('backups')
        .addColumn('backup_id', 'text', (c) => c.primaryKey())
        .addColumn('timeline', 'text', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('taken_at', 'bigint', (c) => c.notNull())
        .addColumn('finished_at', 'bigint', (c) => c.notNull())
        .addColumn('bytes', 'bigint', (c) => c.notNull())
        .addColumn('parts', 'integer', (c) => c.notNull())
        .addColumn('pruned_at', 'bigint')
        .execute();
      await db.schema
        .createTable('restore_drills')
        .addColumn('drill_id', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('tenant_id', 'text')
        .addColumn('started_at', 'bigint', (c) => c.notNull())
        .addColumn('finished_at', 'bigint', (c) => c.notNull())
        .addColumn('ok', 'integer', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('backup_id', 'text')
        .addColumn('rows', 'bigint', (c) => c.notNull())
        .addColumn('entries', 'bigint', (c) => c.notNull())
        .addColumn('detail', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('restore_drills_recent').on('restore_drills').columns(['kind', 'finished_at']).execute();
    },
  };
}

/** A tenant's lifecycle: when it was terminated and by whom, when its purge is due, when it was purged. */
const tenantLifecycle: Migration = {
  async up(db: Kysely<unknown>) {
    for (const column of ['terminated_at', 'purge_after', 'purged_at']) await db.schema.alterTable('tenants').addColumn(column, 'bigint').execute();
    await db.schema.alterTable('tenants').addColumn('terminated_by', 'text').execute();
  },
};

/**
 * The purge of a tenant: when its owners were reminded of it, its progress (so an interrupted purge
 * resumes), what it deleted, and the signed deletion certificate; and the keys that sign
 * certificates. Both tables outlive the tenant.
 */
function tenantPurge(dialect: Dialect): Migration {
  const bin = dialect === 'postgres' ? 'bytea' : 'blob';
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('tenants').addColumn('purge_reminded_at', 'bigint').execute();
      await db.schema
        .createTable('tenant_purges')
        .addColumn('tenant_id', 'text', (c) => c.primaryKey())
        .addColumn('started_at', 'bigint', (c) => c.notNull())
        .addColumn('counts', 'text', (c) => c.notNull())
        .addColumn('requested_by', 'text')
        .addColumn('kek_versions', 'text')
        .addColumn('kek_scheduled_at', 'bigint')
        .addColumn('kek_destroy_at', 'bigint')
        .addColumn('finished_at', 'bigint')
        .addColumn('certificate', 'text')
        .execute();
      await db.schema
        .createTable('certificate_keys')
        .addColumn('key_id', 'text', (c) => c.primaryKey())
        .addColumn('public_jwk', 'text', (c) => c.notNull())
        .addColumn('wrapped_private', bin, (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  };
}

/**
 * Tenant exports: one row per requested archive, built in the background and stored encrypted under
 * `object_key` until `expires_at`. `sha256` is of the plaintext archive, `manifest_sha256` of its manifest.
 */
const exportsTable: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('exports')
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('export_id', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('include_versions', 'integer', (c) => c.notNull())
      .addColumn('requested_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('ready_at', 'bigint')
      .addColumn('expires_at', 'bigint')
      .addColumn('object_key', 'text')
      .addColumn('key_id', 'integer')
      .addColumn('size', 'bigint')
      .addColumn('sha256', 'text')
      .addColumn('manifest_sha256', 'text')
      .addColumn('error', 'text')
      .addPrimaryKeyConstraint('exports_pk', ['tenant_id', 'export_id'])
      .execute();
    await db.schema.createIndex('exports_status').on('exports').columns(['status', 'created_at']).execute();
  },
};

export function migrationsFor(dialect: Dialect): Record<string, Migration> {
  return {
    '0001_initial': initial(dialect),
    '0002_member_identity': memberIdentity(dialect),
    '0003_tenant_mfa_policy': tenantMfaPolicy,
    '0004_access_requests': accessRequests(dialect),
    '0005_job_runs': jobRuns,
    '0006_job_schedule': jobSchedule,
    '0007_system_chain': systemChain,
    '0008_data_key_retirement': dataKeyRetirement,
    '0009_files': files(dialect),
    '0010_notifications': notifications(dialect),
    '0011_journal': journal(dialect),
    '0012_tenant_lifecycle': tenantLifecycle,
    '0013_exports': exportsTable,
    '0014_tenant_purge': tenantPurge(dialect),
  };
}
