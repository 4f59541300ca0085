import { ForbiddenError, NotFoundError } from '../errors.js';
import type { ApiKeyScope, MemberRole, Principal } from '../core/context.js';

export type Action =
  | 'tenant.read'
  | 'tenant.update'
  | 'records.read'
  | 'records.write'
  | 'collections.write'
  | 'api_keys.manage'
  | 'members.read'
  | 'members.manage'
  | 'audit.read';

/** The API-key scope each action needs. Anything not listed is denied. */
const SCOPE_FOR: Record<Action, ApiKeyScope> = {
  'tenant.read': 'read',
  'tenant.update': 'admin',
  'records.read': 'read',
  'records.write': 'write',
  'collections.write': 'admin',
  'api_keys.manage': 'admin',
  'members.read': 'read',
  'members.manage': 'admin',
  'audit.read': 'admin',
};

const SCOPES_IMPLIED: Record<ApiKeyScope, ApiKeyScope[]> = {
  read: ['read'],
  write: ['read', 'write'],
  admin: ['read', 'write', 'admin'],
};

const ROLE_SCOPE: Record<MemberRole, ApiKeyScope[]> = {
  owner: ['read', 'write', 'admin'],
  admin: ['read', 'write', 'admin'],
  member: ['read', 'write'],
  viewer: ['read'],
};

export function grantedScopes(scopes: ApiKeyScope[]): Set<ApiKeyScope> {
  return new Set(scopes.flatMap((s) => SCOPES_IMPLIED[s]));
}

/**
 * The one authorization decision: deny by default. A principal of another tenant gets NotFound,
 * so a tenant id that exists cannot be told apart from one that does not. Operators get nothing
 * here: their access to tenant data comes with approved grants.
 */
export function authorize(principal: Principal, action: Action, resource: { tenantId: string }): void {
  if (principal.kind === 'operator') throw new ForbiddenError('operators need an approved access grant');
  if (principal.tenantId !== resource.tenantId) throw new NotFoundError('tenant not found');
  const needed = SCOPE_FOR[action];
  const granted =
    principal.kind === 'api_key' ? grantedScopes(principal.scopes) : new Set(ROLE_SCOPE[principal.role]);
  if (!needed || !granted.has(needed)) throw new ForbiddenError(`this credential may not ${action}`);
}
