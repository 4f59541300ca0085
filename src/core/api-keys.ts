import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { BadRequestError, NotFoundError, UnauthenticatedError } from '../errors.js';
import { authorize } from '../policy/authorize.js';
import type { BatchState, Tx } from '../store/db/group-commit.js';
import type { Actor, ApiKeyScope, Core, Principal, RequestMeta } from './context.js';
import { auditInTx, plainTarget } from './audit-events.js';
import { randomId } from './ids.js';

/**
 * API keys look like `sr_<key id>_<secret>`. The key id (16 base32 characters) is not secret: it
 * names the key in lists and audit events. The secret (32 random bytes, base64url) is shown once
 * and stored only as its SHA-256, which is enough for a secret of 256 bits.
 */
const API_KEY = /^sr_([a-z2-7]{16})_([A-Za-z0-9_-]{43})$/;

/** The key id a presented credential claims, unverified: for rate limits and audit events only. */
export function claimedApiKeyId(presented: string): string | null {
  return /^sr_([a-z2-7]{16})_/.exec(presented)?.[1] ?? null;
}
export const API_KEY_ID = /^[a-z2-7]{16}$/;
export const SCOPES: readonly ApiKeyScope[] = ['read', 'write', 'admin'];

const hashSecret = (secret: string) => createHash('sha256').update(secret, 'utf8').digest();

export interface ApiKeyView {
  keyId: string;
  scopes: ApiKeyScope[];
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

export interface NewApiKey extends ApiKeyView {
  /** The whole key; it is never shown again. */
  apiKey: string;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** Inserts and audits a new key inside the caller's transaction; returns it with its secret. */
export async function insertApiKey(
  tx: Tx,
  batch: BatchState,
  core: Core,
  actor: Actor,
  meta: RequestMeta,
  tenantId: string,
  scopes: ApiKeyScope[],
  expiresAt: number | null,
): Promise<NewApiKey> {
  const now = core.now();
  const keyId = randomId(10);
  const secret = randomBytes(32).toString('base64url');
  await tx
    .insertInto('api_keys')
    .values({
      tenant_id: tenantId,
      key_id: keyId,
      secret_hash: hashSecret(secret),
      scopes: scopes.join(','),
      expires_at: expiresAt,
      created_at: now,
      revoked_at: null,
    })
    .execute();
  await auditInTx(tx, batch, core, actor, meta, {
    tenantId,
    action: 'api_key.create',
    target: plainTarget(`api-key:${keyId}`),
    result: 'ok',
  });
  return {
    keyId,
    apiKey: `sr_${keyId}_${secret}`,
    scopes,
    createdAt: new Date(now).toISOString(),
    expiresAt: iso(expiresAt),
    revokedAt: null,
  };
}

export async function createApiKey(
  core: Core,
  principal: Principal,
  meta: RequestMeta,
  tenantId: string,
  request: { scopes: ApiKeyScope[]; expiresAt?: string | undefined },
): Promise<NewApiKey> {
  authorize(principal, 'api_keys.manage', { tenantId });
  const scopes = [...new Set(request.scopes)];
  if (scopes.length === 0) throw new BadRequestError('scopes must name at least one of read, write, admin');
  let expiresAt: number | null = null;
  if (request.expiresAt !== undefined) {
    expiresAt = Date.parse(request.expiresAt);
    if (Number.isNaN(expiresAt)) throw new BadRequestError('expiresAt must be an RFC 3339 date-time');
    if (expiresAt <= core.now()) throw new BadRequestError('expiresAt must be in the future');
  }
  return core.committer.submit(tenantId, (tx, batch) => insertApiKey(tx, batch, core, principal, meta, tenantId, scopes, expiresAt));
}

export async function listApiKeys(core: Core, principal: Principal, meta: RequestMeta, tenantId: string): Promise<ApiKeyView[]> {
  authorize(principal, 'api_keys.manage', { tenantId });
  const rows = await core.db.reader
    .selectFrom('api_keys')
    .select(['key_id', 'scopes', 'created_at', 'expires_at', 'revoked_at'])
    .where('tenant_id', '=', tenantId)
    .orderBy('created_at')
    .execute();
  await core.committer.submit(tenantId, (tx, batch) =>
    auditInTx(tx, batch, core, principal, meta, { tenantId, action: 'api_key.list', target: plainTarget('api-keys'), result: 'ok' }),
  );
  return rows.map((r) => ({
    keyId: r.key_id,
    scopes: r.scopes.split(',') as ApiKeyScope[],
    createdAt: new Date(Number(r.created_at)).toISOString(),
    expiresAt: iso(r.expires_at === null ? null : Number(r.expires_at)),
    revokedAt: iso(r.revoked_at === null ? null : Number(r.revoked_at)),
  }));
}

export async function revokeApiKey(core: Core, principal: Principal, meta: RequestMeta, tenantId: string, keyId: string): Promise<void> {
  authorize(principal, 'api_keys.manage', { tenantId });
  if (!API_KEY_ID.test(keyId)) throw new NotFoundError('API key not found');
  await core.committer.submit(tenantId, async (tx, batch) => {
    const result = await tx
      .updateTable('api_keys')
      .set({ revoked_at: core.now() })
      .where('tenant_id', '=', tenantId)
      .where('key_id', '=', keyId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) throw new NotFoundError('API key not found');
    await auditInTx(tx, batch, core, principal, meta, {
      tenantId,
      action: 'api_key.revoke',
      target: plainTarget(`api-key:${keyId}`),
      result: 'ok',
    });
  });
}

const DUMMY_HASH = hashSecret('no such key');

/** Resolves a presented API key to its principal, or throws UnauthenticatedError without saying why. */
export async function authenticateApiKey(core: Core, presented: string): Promise<Principal> {
  const match = API_KEY.exec(presented);
  if (!match) throw new UnauthenticatedError();
  const [, keyId, secret] = match as unknown as [string, string, string];
  const row = await core.db.reader
    .selectFrom('api_keys')
    .innerJoin('tenants', 'tenants.id', 'api_keys.tenant_id')
    .select(['api_keys.tenant_id', 'api_keys.secret_hash', 'api_keys.scopes', 'api_keys.expires_at', 'api_keys.revoked_at', 'tenants.status'])
    .where('api_keys.key_id', '=', keyId)
    .executeTakeFirst();
  // Compare in constant time, against a dummy when the id is unknown, so timing tells nothing.
  const matches = timingSafeEqual(hashSecret(secret), row?.secret_hash ?? DUMMY_HASH);
  if (!row || !matches) throw new UnauthenticatedError();
  if (row.revoked_at !== null) throw new UnauthenticatedError();
  if (row.expires_at !== null && Number(row.expires_at) <= core.now()) throw new UnauthenticatedError();
  return { kind: 'api_key', tenantId: row.tenant_id, keyId, scopes: row.scopes.split(',') as ApiKeyScope[], tenantStatus: row.status };
}
