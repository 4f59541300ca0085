import { ForbiddenError, NotFoundError } from '../errors.js';
import type { ApiKeyScope, GrantScope, MemberRole, OperatorRole, Principal } from '../core/context.js';

/** Who may do an action. Whatever a rule does not list is denied. */
export interface Rule {
  /** The API-key scope it needs; absent: no API key may. */
  scope?: ApiKeyScope;
  /** Member roles that may, in their own tenant. */
  roles: readonly MemberRole[];
  /** Operator roles that may, in any tenant, without a grant: metadata only, never tenant data. */
  operators: readonly OperatorRole[];
  /** Grant scopes under which an operator may, in the granting tenant while the grant lasts. */
  grants: readonly GrantScope[];
}

const ADMINS: readonly MemberRole[] = ['owner', 'admin'];
const WRITERS: readonly MemberRole[] = ['owner', 'admin', 'member'];
const EVERY_ROLE: readonly MemberRole[] = ['owner', 'admin', 'member', 'viewer'];
const EVERY_OPERATOR: readonly OperatorRole[] = ['sre', 'security', 'support'];

/**
 * The one table of who may do what. Tenant actions are about one tenant; `ops.*` actions are the
 * operators' own, about the deployment. Approving access is for the tenant's people, not its keys:
 * a leaked admin key must not be able to let staff in.
 */
export const POLICY = {
  'tenant.read': { scope: 'read', roles: EVERY_ROLE, operators: EVERY_OPERATOR, grants: [] },
  'tenant.update': { scope: 'admin', roles: ADMINS, operators: [], grants: [] },
  'records.read': { scope: 'read', roles: EVERY_ROLE, operators: [], grants: ['read', 'read-write'] },
  'records.write': { scope: 'write', roles: WRITERS, operators: [], grants: ['read-write'] },
  'files.read': { scope: 'read', roles: EVERY_ROLE, operators: [], grants: ['read', 'read-write'] },
  'files.write': { scope: 'write', roles: WRITERS, operators: [], grants: ['read-write'] },
  'collections.write': { scope: 'admin', roles: ADMINS, operators: [], grants: [] },
  'api_keys.manage': { scope: 'admin', roles: ADMINS, operators: [], grants: [] },
  'members.read': { scope: 'read', roles: EVERY_ROLE, operators: [], grants: [] },
  'members.manage': { scope: 'admin', roles: ADMINS, operators: [], grants: [] },
  'audit.read': { scope: 'admin', roles: ADMINS, operators: [], grants: [] },
  'access.request': { roles: [], operators: EVERY_OPERATOR, grants: [] },
  'access.read': { scope: 'admin', roles: ADMINS, operators: EVERY_OPERATOR, grants: [] },
  'access.decide': { roles: ADMINS, operators: [], grants: [] },
  'access.breakglass': { roles: [], operators: ['security'], grants: [] },
  'access.revoke': { roles: ADMINS, operators: EVERY_OPERATOR, grants: [] },
  'ops.read': { roles: [], operators: EVERY_OPERATOR, grants: [] },
  'webhooks.manage': { scope: 'admin', roles: ADMINS, operators: [], grants: [] },
  'ops.notifications': { roles: [], operators: ['sre', 'security'], grants: [] },
  // Restoring rewrites a tenant's records and files without reading them; it is audited in the tenant's log.
  'ops.restore': { roles: [], operators: ['sre'], grants: [] },
  // Owners only (with an explicit confirmation), never a key: a leaked key must not end a tenant. Operators give a reason.
  'tenant.terminate': { roles: ['owner'], operators: ['sre', 'security'], grants: [] },
  // After the purge only the owners' sign-in links remain, for this.
  'tenant.certificate': { roles: ['owner'], operators: ['sre', 'security'], grants: [] },
  // A copy of everything the tenant holds: its admins' (and admin keys') alone, never an operator's, whatever the grant.
  'tenant.export': { scope: 'admin', roles: ADMINS, operators: [], grants: [] },
} as const satisfies Record<string, Rule>;

export type Action = keyof typeof POLICY;
export const ACTIONS = Object.keys(POLICY) as Action[];

/**
 * What a terminated tenant still allows until its purge: reading and exporting its data and its
 * logs, revoking staff access, and cancelling the termination. Every other action is refused
 * (a new action is refused unless listed here).
 */
export const ALLOWED_WHEN_TERMINATED: ReadonlySet<Action> = new Set<Action>([
  'tenant.read',
  'records.read',
  'files.read',
  'members.read',
  'audit.read',
  'access.read',
  'access.revoke',
  'tenant.terminate',
  'tenant.certificate',
  'tenant.export',
  'ops.read',
]);

/** What a tenant being purged, or purged, still allows: its metadata and its deletion certificate. */
export const ALLOWED_WHEN_PURGED: ReadonlySet<Action> = new Set<Action>(['tenant.read', 'tenant.certificate', 'ops.read']);

/** Refuses an action a terminated or purged tenant no longer allows. */
export function assertAllowedForStatus(action: Action, tenantStatus: string): void {
  if (tenantStatus === 'active') return;
  if (tenantStatus === 'terminated') {
    if (!ALLOWED_WHEN_TERMINATED.has(action)) throw new ForbiddenError(`the tenant is terminated: it is read-only (export is still possible) until its termination is cancelled`);
  } else if (!ALLOWED_WHEN_PURGED.has(action)) {
    throw new ForbiddenError(`the tenant is ${tenantStatus}: its data is deleted`);
  }
}

const SCOPES_IMPLIED: Record<ApiKeyScope, ApiKeyScope[]> = {
  read: ['read'],
  write: ['read', 'write'],
  admin: ['read', 'write', 'admin'],
};

function grantedScopes(scopes: ApiKeyScope[]): Set<ApiKeyScope> {
  return new Set(scopes.flatMap((s) => SCOPES_IMPLIED[s]));
}

function operatorMay(principal: Extract<Principal, { kind: 'operator' }>, rule: Rule, tenantId: string | null): boolean {
  if (principal.roles.some((role) => rule.operators.includes(role))) return true;
  const grant = principal.grant;
  return grant !== null && grant.tenantId === tenantId && rule.grants.includes(grant.scope);
}

/**
 * The one authorization decision: deny by default. `tenantId` is the tenant addressed, or null for
 * the deployment's own (`ops.*`) resources. A principal of another tenant gets NotFound, so a tenant
 * id that exists cannot be told apart from one that does not.
 */
export function authorize(principal: Principal, action: Action, resource: { tenantId: string | null }): void {
  const rule: Rule = POLICY[action];
  if (principal.kind === 'operator') {
    if (!operatorMay(principal, rule, resource.tenantId)) {
      throw new ForbiddenError(rule.grants.length > 0 ? `operators need an approved access grant to ${action}` : `operators may not ${action}`);
    }
    return;
  }
  if (resource.tenantId === null) throw new ForbiddenError('this is for the deployment’s operators only');
  if (principal.tenantId !== resource.tenantId) throw new NotFoundError('tenant not found');
  const allowed =
    principal.kind === 'api_key'
      ? rule.scope !== undefined && grantedScopes(principal.scopes).has(rule.scope)
      : rule.roles.includes(principal.role);
  if (!allowed) throw new ForbiddenError(`this credential may not ${action}`);
}
