import { createHmac, timingSafeEqual } from 'node:crypto';
import { BadRequestError, ForbiddenError, NotFoundError } from '../../errors.js';
import { authorize } from '../../policy/authorize.js';
import { auditInTx, sealedTarget } from '../audit-events.js';
import type { Actor, Core, Principal, RequestMeta } from '../context.js';
import { randomId } from '../ids.js';
import { collectionKeys, tenantDataKey } from '../tenant-keys.js';
import { decryptedStream, parseRange, type FileRead } from './file-reads.js';
import { FILE_VERSION_COLUMNS, fileKeys, fileView, openMeta, type FileAddress } from './file-rows.js';

/**
 * A signed URL is the only way to read a file without a bearer credential: an HMAC under a key
 * derived from the tenant's index key, bound to the tenant, the path (by its key, so the URL names
 * no file), one version and one method, for at most `files.signedUrlMaxSeconds`, optionally once.
 *
 *   v1.TENANT.PATH_KEY.VERSION.METHOD.EXPIRES.NONCE.ONCE.MAC
 *
 * Tenant exports are downloaded with tokens of their own kind under the same key (`core/lifecycle/exports.ts`).
 */
const TOKEN = /^v1\.(t_[a-z2-7]{16})\.([A-Za-z0-9_-]{43})\.([1-9][0-9]{0,14})\.(GET)\.([0-9]{10})\.([a-z2-7]{20})\.([01])\.([A-Za-z0-9_-]{43})$/;
/** One answer for every refusal: a holder learns nothing of why a URL does not work. */
const REFUSED = 'the signed URL is invalid, expired or already used';

async function urlKey(core: Core, tenantId: string, caller: Actor): Promise<Buffer> {
  return Buffer.from((await collectionKeys(core, tenantId, '$signed-urls', caller)).fieldKey('hmac'));
}

const mac = (key: Buffer, payload: string) => createHmac('sha256', key).update(payload, 'utf8').digest('base64url');

/**
 * Signs payloads under the tenant's URL key as `PAYLOAD.MAC`; a payload's first part names its kind,
 * so one kind of token never passes for another. Fetched before a transaction, used inside it.
 */
export async function tokenSigner(core: Core, tenantId: string, caller: Actor): Promise<(payload: string) => string> {
  const key = await urlKey(core, tenantId, caller);
  return (payload) => `${payload}.${mac(key, payload)}`;
}

/** The parts a token's pattern captures; the same 403 as every other refusal when it does not match. */
export function tokenParts(pattern: RegExp, token: string): string[] {
  const match = pattern.exec(token);
  if (!match) throw new ForbiddenError(REFUSED);
  return [...match];
}

/**
 * Checks a token that names an existing tenant: its MAC (the last part, over everything before it)
 * under that tenant's URL key, and its expiry (seconds since the epoch). Every failure is the same 403.
 */
export async function verifyToken(core: Core, tenantId: string, caller: Actor, token: string, expiresAtSeconds: number): Promise<void> {
  const tenant = await core.db.reader.selectFrom('tenants').select('id').where('id', '=', tenantId).executeTakeFirst();
  if (!tenant) throw new ForbiddenError(REFUSED);
  const cut = token.lastIndexOf('.');
  const expected = Buffer.from(mac(await urlKey(core, tenantId, caller), token.slice(0, cut)), 'base64url');
  const given = Buffer.from(token.slice(cut + 1), 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(expected, given) || core.now() >= expiresAtSeconds * 1000) throw new ForbiddenError(REFUSED);
}

export interface SignedUrl {
  /** Path and query of the URL, to put after the API's origin. */
  path: string;
  expiresAt: string;
  version: number;
}

/** Issues a signed URL to download a file's version (the current one unless given); audited as `file.sign`. */
export async function signFileUrl(
  core: Core,
  principal: Principal,
  meta: RequestMeta,
  address: FileAddress,
  request: { version?: number | undefined; expiresInSeconds?: number | undefined; singleUse?: boolean | undefined },
): Promise<SignedUrl> {
  const { tenantId } = address;
  authorize(principal, 'files.read', { tenantId });
  const seconds = request.expiresInSeconds ?? core.files.signedUrlMaxSeconds;
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > core.files.signedUrlMaxSeconds) {
    throw new BadRequestError(`a signed URL lasts 1-${core.files.signedUrlMaxSeconds} seconds`);
  }
  const keys = await fileKeys(core, tenantId, principal);
  const pathKey = keys.pathKey(address.path);
  const dataKey = await tenantDataKey(core, tenantId, principal);
  const sign = await tokenSigner(core, tenantId, principal);
  const expires = Math.floor(core.now() / 1000) + seconds;
  return core.committer.submit(tenantId, async (tx, batch) => {
    let version = request.version;
    if (version === undefined) {
      const file = await tx.selectFrom('files').select(['version', 'deleted']).where('tenant_id', '=', tenantId).where('path_key', '=', pathKey).executeTakeFirst();
      if (!file || file.deleted !== 0) throw new NotFoundError('file not found');
      version = Number(file.version);
    }
    const exists = await tx.selectFrom('file_versions').select('version').where('tenant_id', '=', tenantId).where('path_key', '=', pathKey).where('version', '=', version).where('op', '=', 'put').executeTakeFirst();
    if (!exists) throw new NotFoundError('no such version of the file');
    const payload = ['v1', tenantId, pathKey.toString('base64url'), version, 'GET', expires, randomId(12), request.singleUse ? 1 : 0].join('.');
    const target = sealedTarget(dataKey, tenantId, `file:${address.path} v${version} until:${new Date(expires * 1000).toISOString()}${request.singleUse ? ' single-use' : ''}`);
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: 'file.sign', target, result: 'ok' });
    return { path: `/v1/signed/${sign(payload)}`, expiresAt: new Date(expires * 1000).toISOString(), version };
  });
}

/**
 * Reads the file version a signed URL names, if its MAC verifies, it has not expired, the method is
 * the one it was signed for and (when single-use) it was never used. Every use is audited in the
 * tenant's log, in the name of the URL (`system:signed-url:NONCE`).
 */
export async function readSignedFile(core: Core, token: string, method: string, meta: RequestMeta, rangeHeader?: string): Promise<FileRead> {
  const [, tenantId, pathKeyText, versionText, signedMethod, expiresText, nonce, once] = tokenParts(TOKEN, token);
  const actor: Actor = { kind: 'system', name: `signed-url:${nonce!}` };
  await verifyToken(core, tenantId!, actor, token, Number(expiresText));
  if (method !== signedMethod && !(method === 'HEAD' && signedMethod === 'GET')) throw new ForbiddenError(REFUSED);
  const expires = Number(expiresText) * 1000;
  const pathKey = Buffer.from(pathKeyText!, 'base64url');
  const row = await core.db.reader
    .selectFrom('file_versions')
    .select(FILE_VERSION_COLUMNS)
    .where('tenant_id', '=', tenantId!)
    .where('path_key', '=', pathKey)
    .where('version', '=', Number(versionText))
    .where('op', '=', 'put')
    .executeTakeFirst();
  if (!row) throw new NotFoundError('the file version this URL names no longer exists');
  const fileMeta = await openMeta(core, actor, tenantId!, row);
  const dataKey = await tenantDataKey(core, tenantId!, actor);
  await core.committer.submit(tenantId!, async (tx, batch) => {
    if (once === '1') {
      // The primary key makes a second use fail, across instances too.
      const used = await tx.selectFrom('signed_url_uses').select('nonce').where('tenant_id', '=', tenantId!).where('nonce', '=', nonce!).executeTakeFirst();
      if (used) throw new ForbiddenError(REFUSED);
      await tx.insertInto('signed_url_uses').values({ tenant_id: tenantId!, nonce: nonce!, expires_at: expires }).execute();
    }
    const target = sealedTarget(dataKey, tenantId!, `file:${fileMeta.path} v${Number(row.version)}`);
    await auditInTx(tx, batch, core, actor, meta, { tenantId: tenantId!, action: 'file.get', target, result: 'ok' });
  });
  const file = fileView(fileMeta, row);
  const range = parseRange(rangeHeader, file.size);
  return { file, range, body: await decryptedStream(core, actor, tenantId!, row, range) };
}

/** Forgets single-use nonces whose URLs have expired anyway. */
export async function forgetExpiredUrlUses(core: Core): Promise<number> {
  const cutoff = core.now();
  const tenants = await core.db.reader.selectFrom('signed_url_uses').select('tenant_id').distinct().where('expires_at', '<', cutoff).execute();
  let removed = 0;
  for (const { tenant_id } of tenants) {
    removed += await core.committer.submit(tenant_id, async (tx) =>
      Number((await tx.deleteFrom('signed_url_uses').where('tenant_id', '=', tenant_id).where('expires_at', '<', cutoff).executeTakeFirst()).numDeletedRows),
    );
  }
  return removed;
}
