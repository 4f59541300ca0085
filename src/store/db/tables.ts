/**
 * Row types of every table. Times are milliseconds since the epoch (bigint columns); binary values
 * are Buffers (BLOB in SQLite, bytea in PostgreSQL). Every table that holds tenant data is keyed
 * by tenant_id first, so PostgreSQL deployments can shard by tenant.
 */
export interface TenantsTable {
  id: string;
  name: string;
  status: string;
  kek_name: string;
  created_at: number;
  /** 1 when members must present evidence of a second factor. */
  require_mfa: number;
  /** Set by termination (`status` terminated); the purge is due at `purge_after`, by the database's clock. */
  terminated_at: number | null;
  purge_after: number | null;
  /** Who terminated it: a member id, or an operator's pseudonym. */
  terminated_by: string | null;
  /** When the owners were told the purge is near (`tenant.purge_scheduled`). */
  purge_reminded_at: number | null;
  purged_at: number | null;
}

/** Per tenant: the head of its audit hash chain. */
export interface TenantHeadsTable {
  tenant_id: string;
  audit_seq: number;
  audit_hash: Buffer;
}

export interface DataKeysTable {
  tenant_id: string;
  key_id: number;
  purpose: string;
  wrapped: Buffer;
  created_at: number;
  /** Set once no mutable row is sealed under this data key any more (after a rotation). */
  retired_at: number | null;
}

export interface MembersTable {
  tenant_id: string;
  member_id: string;
  role: string;
  issuer: string | null;
  subject: string | null;
  email_enc: Buffer | null;
  /** HMAC of the lower-cased e-mail under the tenant's index key: finds an invitation without decrypting. */
  email_token: Buffer | null;
  status: string;
  created_at: number;
}

export interface ApiKeysTable {
  tenant_id: string;
  key_id: string;
  secret_hash: Buffer;
  scopes: string;
  expires_at: number | null;
  created_at: number;
  revoked_at: number | null;
}

export interface CollectionsTable {
  tenant_id: string;
  name: string;
  spec: string;
  created_at: number;
  updated_at: number;
}

export interface RecordsTable {
  tenant_id: string;
  collection: string;
  record_key: Buffer;
  version: number;
  body: Buffer;
  deleted: number;
  created_at: number;
  updated_at: number;
}

export interface RecordVersionsTable {
  tenant_id: string;
  collection: string;
  record_key: Buffer;
  version: number;
  op: string;
  body: Buffer;
  created_at: number;
}

export interface RecordIndexTable {
  tenant_id: string;
  collection: string;
  field: string;
  token: Buffer;
  record_key: Buffer;
}

export interface AuditEventsTable {
  tenant_id: string;
  seq: number;
  at: number;
  actor: string;
  action: string;
  target: Buffer;
  result: string;
  request_id: string;
  source_ip: string;
  prev_hash: Buffer;
  hash: Buffer;
}

/** One committed operation's write statements (see statement-journal.ts), until shipped. */
export interface ChangeLogTable {
  seq: number;
  /** The tenant whose operation it was, or `_system`. */
  tenant_id: string;
  at: number;
  statements: Buffer;
  /** 1 when the operation's statements go on in the next entry: a large operation spans several. */
  continued: number;
}

/** One row: the timeline of this database's history and the sequence of its last journaled operation. */
export interface JournalHeadTable {
  id: number;
  timeline: string;
  seq: number;
}

/** One row: the last sequence shipped to the blob store and the hash of the segment that holds it. */
export interface ShipHeadTable {
  id: number;
  seq: number;
  hash: Buffer;
  shipped_at: number;
  /** Whoever is shipping now, and until when, so two shippers never write the same segment. */
  lease_owner: string | null;
  lease_until: number | null;
}

export interface AccessRequestsTable {
  tenant_id: string;
  request_id: string;
  /** A pseudonymous id of the operator's identity; the deployment maps it to a person. */
  operator_id: string;
  operator_roles: string;
  /** `read` or `read-write`. */
  scope: string;
  duration_seconds: number;
  /** 1 when the operator asked for emergency approval by a second, security operator. */
  break_glass: number;
  /** The reason and ticket reference, sealed under the tenant's data key. */
  details_enc: Buffer;
  /** pending → approved → expired | revoked; or pending → denied | revoked. */
  status: string;
  requested_at: number;
  decided_at: number | null;
  decided_by: string | null;
  expires_at: number | null;
  ended_at: number | null;
}

/** Notifications waiting for delivery; the payload names ids only, never customer data or secrets. */
export interface OutboxTable {
  id: string;
  tenant_id: string | null;
  event_type: string;
  payload: string;
  status: string;
  attempts: number;
  created_at: number;
  next_attempt_at: number;
  /** Set once the notification's deliveries were created. */
  expanded_at: number | null;
}

/** A webhook endpoint of a tenant (`owner` = tenant id) or of the operators (`owner` = `_system`). */
export interface WebhooksTable {
  owner: string;
  webhook_id: string;
  url: string;
  /** Comma-separated event types it receives. */
  events: string;
  /** The signing secret, wrapped by the owner's KMS key (tenant KEK or system KEK). */
  secret_wrapped: Buffer;
  created_at: number;
}

/** One notification to one destination; retried until delivered or dead. */
export interface DeliveriesTable {
  delivery_id: string;
  notification_id: string;
  tenant_id: string | null;
  event_type: string;
  /** `webhook` or `email`. */
  channel: string;
  /** The webhook (`owner/webhook_id`) or the e-mail recipients' source (`owners:TENANT`, `operators`). */
  target: string;
  /** `pending`, `delivered` or `dead`. */
  status: string;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  created_at: number;
  delivered_at: number | null;
}

export interface DeliveryAttemptsTable {
  delivery_id: string;
  attempt: number;
  at: number;
  ok: number;
  /** The HTTP status or the error, never a secret. */
  detail: string;
  duration_ms: number;
}

/** A file's current state; its name is only in the versions' sealed metadata. */
export interface FilesTable {
  tenant_id: string;
  /** HMAC of the path under the tenant's index key. */
  path_key: Buffer;
  version: number;
  deleted: number;
  created_at: number;
  updated_at: number;
}

export interface FileVersionsTable {
  tenant_id: string;
  path_key: Buffer;
  version: number;
  op: string;
  /** The blob with this version's ciphertext; null for a tombstone. An undelete points at an older version's blob. */
  object_key: string | null;
  /** Plaintext bytes. */
  size: number;
  /** Ciphertext bytes and their SHA-256 (hex), which the scrub verifies on every replica. */
  stored_size: number;
  stored_sha256: string | null;
  /** Sealed JSON: path, content type, SHA-256 of the plaintext. */
  meta_enc: Buffer;
  created_at: number;
  /** When a newer version (or a delete) superseded this one; retention counts from here. */
  noncurrent_since: number | null;
}

/** A blind token for each folder above a file, so a prefix listing does not decrypt the whole tenant. */
export interface FileFoldersTable {
  tenant_id: string;
  folder_token: Buffer;
  path_key: Buffer;
}

/** A copy a replica missed (a put or a delete), until the repair job makes it. */
export interface BlobRepairsTable {
  object_key: string;
  backend: string;
  op: string;
  enqueued_at: number;
  attempts: number;
  last_error: string | null;
}

export interface SignedUrlUsesTable {
  tenant_id: string;
  nonce: string;
  expires_at: number;
}

export interface JobRunsTable {
  name: string;
  started_at: number;
  updated_at: number;
  finished_at: number | null;
  total: number;
  done: number;
}

export interface JobScheduleTable {
  name: string;
  next_run_at: number;
  lease_owner: string | null;
  lease_until: number | null;
  last_started_at: number | null;
  last_finished_at: number | null;
  last_result: string | null;
  last_ok: number | null;
}

/** A finished backup (its manifest is in the blob store); `pruned_at` once retention removed it. */
export interface BackupsTable {
  backup_id: string;
  timeline: string;
  seq: number;
  taken_at: number;
  finished_at: number;
  bytes: number;
  parts: number;
  pruned_at: number | null;
}

/** One restore drill: what it restored, whether it matched the live database, and why not. */
export interface RestoreDrillsTable {
  drill_id: string;
  /** `full` or `tenant`. */
  kind: string;
  tenant_id: string | null;
  started_at: number;
  finished_at: number;
  ok: number;
  seq: number;
  backup_id: string | null;
  rows: number;
  entries: number;
  detail: string;
}

/** A tenant's purge: progress, what it held when the purge began (JSON), and its deletion certificate (a JWS). */
export interface TenantPurgesTable {
  tenant_id: string;
  started_at: number;
  counts: string;
  /** Who terminated the tenant, as recorded at termination. */
  requested_by: string | null;
  /** The KEK's versions (JSON) when its destruction was scheduled, and when they are destroyed. */
  kek_versions: string | null;
  kek_scheduled_at: number | null;
  kek_destroy_at: number | null;
  finished_at: number | null;
  certificate: string | null;
}

/** Ed25519 keys that sign deletion certificates: the private half wrapped by the KMS. */
export interface CertificateKeysTable {
  key_id: string;
  public_jwk: string;
  wrapped_private: Buffer;
  created_at: number;
}

/** A tenant export: `building` until the archive is stored, then `ready` (or `failed`), `expired` once its blob is deleted. */
export interface ExportsTable {
  tenant_id: string;
  export_id: string;
  status: string;
  include_versions: number;
  /** Who asked: a member id, an API key id, or the CLI. */
  requested_by: string;
  created_at: number;
  ready_at: number | null;
  expires_at: number | null;
  /** The encrypted archive in the blob store, under `exports/<tenant>/`. */
  object_key: string | null;
  /** The data key that encrypted it. */
  key_id: number | null;
  /** Size and SHA-256 (hex) of the plaintext archive. */
  size: number | null;
  sha256: string | null;
  manifest_sha256: string | null;
  error: string | null;
}

export interface Tables {
  tenants: TenantsTable;
  tenant_heads: TenantHeadsTable;
  data_keys: DataKeysTable;
  members: MembersTable;
  api_keys: ApiKeysTable;
  collections: CollectionsTable;
  records: RecordsTable;
  record_versions: RecordVersionsTable;
  record_index: RecordIndexTable;
  audit_events: AuditEventsTable;
  change_log: ChangeLogTable;
  journal_head: JournalHeadTable;
  ship_head: ShipHeadTable;
  backups: BackupsTable;
  restore_drills: RestoreDrillsTable;
  access_requests: AccessRequestsTable;
  outbox: OutboxTable;
  webhooks: WebhooksTable;
  deliveries: DeliveriesTable;
  delivery_attempts: DeliveryAttemptsTable;
  job_runs: JobRunsTable;
  files: FilesTable;
  file_versions: FileVersionsTable;
  file_folders: FileFoldersTable;
  blob_repairs: BlobRepairsTable;
  signed_url_uses: SignedUrlUsesTable;
  job_schedule: JobScheduleTable;
  tenant_purges: TenantPurgesTable;
  certificate_keys: CertificateKeysTable;
  exports: ExportsTable;
}
