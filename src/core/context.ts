import type { Keyring } from '../crypto/keyring.js';
import type { Kms } from '../kms/kms.js';
import type { GroupCommitter } from '../store/db/group-commit.js';
import type { ReplicatedBlobStore } from '../store/blob/replicated.js';
import type { Database } from '../store/db/open.js';
import type { CurrentDataKeys } from './current-data-keys.js';

export interface CoreLimits {
  maxRecordBytes: number;
  maxIndexedFields: number;
  defaultPageSize: number;
  maxPageSize: number;
}

export interface FileSettings {
  maxBytes: number;
  retentionMs: number;
  signedUrlMaxSeconds: number;
}

export interface RecoverySettings {
  /** Largest change-log segment the shipper writes. */
  segmentMaxBytes: number;
}

/** Everything the domain operations need, injected so tests control the clock. */
export interface Core {
  db: Database;
  committer: GroupCommitter;
  kms: Kms;
  /** Unwrapped data keys; a cache miss is audited in the name of the actor that caused it. */
  keyring: Keyring<Actor>;
  /** Which data key each tenant encrypts new data under. */
  currentDataKeys: CurrentDataKeys;
  limits: CoreLimits;
  /** File ciphertext, on a primary and a replica. */
  blobs: ReplicatedBlobStore;
  files: FileSettings;
  recovery: RecoverySettings;
  /** Days from termination to purge, and how long a built export stays downloadable, in milliseconds. */
  lifecycle: {
    purgeAfterMs: number;
    exportRetentionMs: number;
    /** The KMS's waiting period before a key scheduled for destruction is destroyed. */
    destroyWaitMs: number;
    /** Retention that decides when the recovery store's copies age out (for deletion certificates). */
    ageOut: { segmentRetentionMs: number; backupRetentionMs: number; backupIntervalMs: number };
  };
  now: () => number;
  /**
   * The database's clock, for deadlines that must not depend on one instance's clock (a purge is
   * never early because an instance's clock runs fast).
   */
  databaseNow: () => Promise<number>;
}

/**
 * Who is acting, for authorization and for the audit log. Never holds a secret. A credential of a
 * tenant carries the tenant's lifecycle status as read when it was checked, so the read-only check
 * of a terminated tenant costs no query of its own.
 */
export type Principal =
  | { kind: 'api_key'; tenantId: string; keyId: string; scopes: ApiKeyScope[]; tenantStatus?: string }
  | { kind: 'member'; tenantId: string; memberId: string; role: MemberRole; tenantStatus?: string }
  | { kind: 'operator'; operatorId: string; roles: OperatorRole[]; grant: ActiveGrant | null };

export type ApiKeyScope = 'read' | 'write' | 'admin';
export type MemberRole = 'owner' | 'admin' | 'member' | 'viewer';
/** The deployment's staff: none of these roles reads tenant data without an approved grant. */
export type OperatorRole = 'sre' | 'security' | 'support';
export type GrantScope = 'read' | 'read-write';

/** An approved, unexpired access grant of one operator to one tenant's data. */
export interface ActiveGrant {
  tenantId: string;
  requestId: string;
  scope: GrantScope;
  expiresAt: number;
}

/** A person proven by an identity provider's token; the token itself is never kept. */
export interface VerifiedIdentity {
  issuer: string;
  subject: string;
  email: string | null;
  emailVerified: boolean;
  /** The token carries evidence of a second factor, by its provider's configured mapping. */
  mfa: boolean;
  /** The raw second-factor claims, for realms with their own mapping: OIDC `amr`, Firebase `sign_in_second_factor`. */
  amr: string[];
  secondFactor: string | null;
}

/** Whoever acts: a caller, or the deployment itself (a background job, the keyring). */
export type Actor = Principal | { kind: 'system'; name: string };

/** Where a request came from, for the audit log. */
export interface RequestMeta {
  requestId: string;
  sourceIp: string;
}

export function actorName(principal: Principal): string {
  switch (principal.kind) {
    case 'api_key':
      return `api-key:${principal.keyId}`;
    case 'member':
      return `member:${principal.memberId}`;
    case 'operator':
      return principal.grant ? `operator:${principal.operatorId} grant:${principal.grant.requestId}` : `operator:${principal.operatorId}`;
  }
}
