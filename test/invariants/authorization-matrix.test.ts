// The authorization matrix (OWASP API Top 10 2023, items 1, 3 and 5): every route the server has,
// from its own route table, × every kind of caller (no credential, each API-key scope, each member
// role, each operator role, operators holding each grant scope) × the caller's own tenant and a
// foreign one. The expected outcome of each cell comes from the policy table; any difference fails.
import assert from 'node:assert/strict';
import { randomId } from '../../src/core/ids.js';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import { activeGrant, approveAccessRequest, requestAccess } from '../../src/core/access-requests.js';
import { requestExport } from '../../src/core/lifecycle/exports.js';
import type { OperatorRole, GrantScope, MemberRole, Principal } from '../../src/core/context.js';
import { requireAction, type RouteAction } from '../../src/http/routes/index.js';
import { operatorId } from '../../src/identity/operators.js';
import { POLICY, type Action, type Rule } from '../../src/policy/authorize.js';
import { startIdentityProviders, type IdentityProviders } from '../support/identity-providers.js';
import { SYSTEM_CHAIN } from '../../src/core/audit-events.js';
import { signCertificate } from '../../src/core/lifecycle/certificate-keys.js';
import { startHarness, type Harness } from '../support/strongroom.js';

type Caller =
  | { kind: 'none' }
  | { kind: 'api_key'; scope: 'read' | 'write' | 'admin' }
  | { kind: 'member'; role: MemberRole }
  | { kind: 'operator'; role: OperatorRole; grant: GrantScope | null };

const CALLERS: Caller[] = [
  { kind: 'none' },
  ...(['read', 'write', 'admin'] as const).map((scope) => ({ kind: 'api_key', scope }) as const),
  ...(['owner', 'admin', 'member', 'viewer'] as const).map((role) => ({ kind: 'member', role }) as const),
  ...(['sre', 'security', 'support'] as const).map((role) => ({ kind: 'operator', role, grant: null }) as const),
  { kind: 'operator', role: 'support', grant: 'read' },
  { kind: 'operator', role: 'support', grant: 'read-write' },
];

const label = (c: Caller) =>
  c.kind === 'none' ? 'no credential' : c.kind === 'api_key' ? `${c.scope} key` : c.kind === 'member' ? `${c.role} member` : `${c.role} operator${c.grant ? ` with a ${c.grant} grant` : ''}`;
const SRE_CALLER = { kind: 'operator', role: 'sre', grant: null } as const;
const subjectOf = (c: Extract<Caller, { kind: 'operator' }>) => `op-${c.role}-${c.grant ?? 'none'}`;

/** Where the call goes: the caller's tenant (A, where grants are held), another tenant (B), or no tenant. */
type Place = 'own' | 'foreign' | 'none';

/** The outcome the policy table says: allowed, or the status of the refusal. */
function expected(caller: Caller, rule: Rule, place: Place): 'allowed' | 401 | 403 | 404 {
  if (caller.kind === 'none') return 401;
  if (caller.kind === 'operator') {
    if (rule.operators.includes(caller.role)) return 'allowed';
    return caller.grant !== null && place === 'own' && rule.grants.includes(caller.grant) ? 'allowed' : 403;
  }
  if (place === 'none') return 403;
  if (place === 'foreign') return 404;
  if (caller.kind === 'api_key') {
    const implied = { read: ['read'], write: ['read', 'write'], admin: ['read', 'write', 'admin'] }[caller.scope];
    return rule.scope !== undefined && implied.includes(rule.scope) ? 'allowed' : 403;
  }
  return rule.roles.includes(caller.role) ? 'allowed' : 403;
}

interface Tenant {
  tenantId: string;
  adminKey: string;
  keys: Record<'read' | 'write' | 'admin', string>;
  owner: Principal;
}

const unique = () => randomBytes(5).toString('hex');
const META = { requestId: 'matrix', sourceIp: 'local' };

test('a route that names no authorization action stops the server from starting', async () => {
  const app = Fastify();
  const table: RouteAction[] = [];
  app.addHook('onRoute', requireAction(table));
  app.get('/named', { config: { action: 'tenant.read' } }, async () => ({}));
  assert.throws(() => app.get('/unnamed', async () => ({})), /GET \/unnamed names no authorization action/);
  assert.deepEqual(table, [{ method: 'GET', url: '/named', action: 'tenant.read' }]);
  await app.close();
});

describe('the authorization matrix', () => {
  let idp: IdentityProviders;
  let h: Harness;
  let a: Tenant;
  let b: Tenant;
  const operators = CALLERS.filter((c): c is Extract<Caller, { kind: 'operator' }> => c.kind === 'operator');

  const token = async (sub: string, claims: Record<string, unknown> = {}) => idp.oidcToken({ sub, amr: ['pwd', 'otp'], ...claims });
  const operatorPrincipal = (c: Extract<Caller, { kind: 'operator' }>): Principal => ({
    kind: 'operator',
    operatorId: operatorId(idp.issuer, subjectOf(c)),
    roles: [c.role],
    grant: null,
  });
  const someOperator = (): Principal => ({ kind: 'operator', operatorId: `op_${unique()}${unique()}`.slice(0, 19), roles: ['support'], grant: null });

  async function setUpTenant(name: string): Promise<Tenant> {
    const t = await h.tenant(name);
    const base = `/v1/tenants/${t.tenantId}`;
    const keys = { admin: t.apiKey } as Tenant['keys'];
    for (const scope of ['read', 'write'] as const) {
      const res = await h.call('POST', `${base}/api-keys`, { key: t.apiKey, body: { scopes: [scope] } });
      assert.equal(res.status, 201, res.text);
      keys[scope] = res.json.apiKey;
    }
    let owner: Principal | undefined;
    for (const role of ['owner', 'admin', 'member', 'viewer'] as const) {
      const email = `${role}@${name}.example`;
      const invited = await h.call('POST', `${base}/members`, { key: t.apiKey, body: { email, role } });
      assert.equal(invited.status, 201, invited.text);
      const claimed = await h.call('GET', base, { key: await token(`${name}-${role}`, { email, email_verified: true }) });
      assert.equal(claimed.status, 200, claimed.text);
      if (role === 'owner') owner = { kind: 'member', tenantId: t.tenantId, memberId: invited.json.memberId, role };
    }
    assert.equal((await h.call('PUT', `${base}/collections/notes`, { key: t.apiKey, body: { indexes: [] } })).status, 201);
    assert.equal((await h.call('PUT', `${base}/collections/notes/records/n1`, { key: t.apiKey, body: { text: 'x' } })).status, 201);
    assert.equal((await h.call('PUT', `${base}/files/docs/f.txt`, { key: t.apiKey, rawBody: 'file', headers: { 'content-type': 'text/plain' } })).status, 201);
    return { tenantId: t.tenantId, adminKey: t.apiKey, keys, owner: owner! };
  }

  /** Operators with a grant hold it in A for every cell: a cell that revoked it gets a new one. */
  async function ensureGrants(): Promise<void> {
    for (const c of operators) {
      if (!c.grant) continue;
      const principal = operatorPrincipal(c);
      if (principal.kind !== 'operator' || (await activeGrant(h.core, a.tenantId, principal.operatorId))) continue;
      const asked = await requestAccess(h.core, principal, META, a.tenantId, { reason: 'matrix', ticket: 'M-1', scope: c.grant, durationMinutes: 240, breakGlass: false });
      await approveAccessRequest(h.core, a.owner, META, a.tenantId, asked.requestId);
    }
  }

  /** An access request for a decision route: pending, by another operator, or the caller's own open one for a revoke. */
  async function accessRequestFor(t: Tenant, caller: Caller, verb: string): Promise<string> {
    if (verb === 'revoke' && caller.kind === 'operator') {
      const principal = operatorPrincipal(caller) as Extract<Principal, { kind: 'operator' }>;
      const open = await h.core.db.reader
        .selectFrom('access_requests')
        .select('request_id')
        .where('tenant_id', '=', t.tenantId)
        .where('operator_id', '=', principal.operatorId)
        .where('status', 'in', ['pending', 'approved'])
        .executeTakeFirst();
      if (open) return open.request_id;
      return (await requestAccess(h.core, principal, META, t.tenantId, { reason: 'own', ticket: 'M-2', scope: 'read', durationMinutes: 5, breakGlass: false })).requestId;
    }
    const asked = await requestAccess(h.core, someOperator(), META, t.tenantId, { reason: 'other', ticket: 'M-3', scope: 'read', durationMinutes: 5, breakGlass: verb === 'break-glass' });
    return asked.requestId;
  }

  /**
   * What each route needs to succeed when allowed: path values (fresh objects where the call
   * would consume them) and a body. A route missing here fails the test: teach it the new route.
   */
  type Fixture = (t: Tenant, caller: Caller) => Promise<{ params?: Record<string, string>; body?: unknown }>;
  const setStatus = (t: Tenant, status: 'active' | 'terminated') =>
    h.core.committer.submit(t.tenantId, (tx) =>
      tx
        .updateTable('tenants')
        .set(status === 'active' ? { status, terminated_at: null, purge_after: null } : { status, terminated_at: 0, purge_after: Date.parse('2100-01-01') })
        .where('id', '=', t.tenantId)
        .execute(),
    );
  const freshKey = async (t: Tenant) => {
    const res = await h.call('POST', `/v1/tenants/${t.tenantId}/api-keys`, { key: t.adminKey, body: { scopes: ['read'] } });
    return { params: { keyId: res.json.keyId as string } };
  };
  const freshMember = async (t: Tenant) => {
    const res = await h.call('POST', `/v1/tenants/${t.tenantId}/members`, { key: t.adminKey, body: { email: `${unique()}@matrix.example`, role: 'viewer' } });
    return { params: { memberId: res.json.memberId as string } };
  };
  const freshRecord = async (t: Tenant) => {
    const id = `r-${unique()}`;
    await h.call('PUT', `/v1/tenants/${t.tenantId}/collections/notes/records/${id}`, { key: t.adminKey, body: { text: 'to delete' } });
    return { params: { collection: 'notes', id } };
  };
  const existingRecord = async () => ({ params: { collection: 'notes', id: 'n1' } });
  /** A dead letter to retry, put straight into the table (making one takes a receiver's outage). */
  const deadLetter = async () => {
    const deliveryId = `d_${randomId(10)}`;
    await h.core.committer.submit('_system', (tx) =>
      tx
        .insertInto('deliveries')
        .values({ delivery_id: deliveryId, notification_id: 'n_matrix', tenant_id: null, event_type: 'webhook.test', channel: 'webhook', target: '_system/wh_none', status: 'dead', attempts: 3, next_attempt_at: 0, last_error: 'HTTP 503', created_at: 0, delivered_at: null })
        .execute(),
    );
    return deliveryId;
  };
  const freshWebhook = async (path: string, bearer: string) => {
    const res = await h.call('POST', path, { key: bearer, body: { url: 'https://hooks.matrix.example/x', events: ['webhook.test'] } });
    assert.equal(res.status, 201, res.text);
    return res.json.webhookId as string;
  };
  const existingFile = async () => ({ params: { '*': 'docs/f.txt' } });
  const freshFile = async (t: Tenant) => {
    const path = `docs/${unique()}.txt`;
    await h.call('PUT', `/v1/tenants/${t.tenantId}/files/${path}`, { key: t.adminKey, rawBody: 'to delete', headers: { 'content-type': 'text/plain' } });
    return { params: { '*': path } };
  };
  /** Any export of the tenant: its status reads answer whatever state it is in. */
  const anExport = async (t: Tenant) => {
    const found = await h.core.db.reader.selectFrom('exports').select('export_id').where('tenant_id', '=', t.tenantId).executeTakeFirst();
    return { params: { exportId: found?.export_id ?? (await requestExport(h.core, t.owner, META, t.tenantId, {})).exportId } };
  };
  const decision = (verb: string) => async (t: Tenant, caller: Caller) => ({ params: { requestId: await accessRequestFor(t, caller, verb) } });
  const FIXTURES: Record<string, Fixture> = {
    'GET /v1/ops/tenants': async () => ({}),
    'GET /v1/ops/storage': async () => ({}),
    'GET /v1/ops/recovery': async () => ({}),
    'GET /v1/ops/lifecycle': async () => ({}),
    // A certificate on file, as a purge leaves it (the tenant stays active here, so every caller can be tried).
    'GET /v1/tenants/:tenantId/deletion-certificate': async (t) => {
      const certificate = await signCertificate(h.core, { tenantId: t.tenantId });
      await h.core.committer.submit(SYSTEM_CHAIN, async (tx) => {
        await tx.deleteFrom('tenant_purges').where('tenant_id', '=', t.tenantId).execute();
        await tx.insertInto('tenant_purges').values({ tenant_id: t.tenantId, started_at: 0, counts: '{}', certificate }).execute();
      });
      return {};
    },
    'POST /v1/tenants/:tenantId/termination': async (t) => ({ body: { confirm: t.tenantId, reason: 'matrix' } }),
    'DELETE /v1/tenants/:tenantId/termination': async (t) => {
      await setStatus(t, 'terminated');
      return {};
    },
    // The tenant restored to the journal's current head: its records and files stay as they are.
    'POST /v1/ops/tenants/:tenantId/restore': async () => ({ body: { toSeq: Number((await h.core.db.reader.selectFrom('journal_head').select('seq').executeTakeFirstOrThrow()).seq) } }),
    'GET /v1/tenants/:tenantId': async () => ({}),
    'PATCH /v1/tenants/:tenantId': async () => ({ body: { requireMfa: false } }),
    'POST /v1/tenants/:tenantId/api-keys': async () => ({ body: { scopes: ['read'] } }),
    'GET /v1/tenants/:tenantId/api-keys': async () => ({}),
    'DELETE /v1/tenants/:tenantId/api-keys/:keyId': freshKey,
    'POST /v1/tenants/:tenantId/members': async () => ({ body: { email: `${unique()}@matrix.example`, role: 'viewer' } }),
    'GET /v1/tenants/:tenantId/members': async () => ({}),
    'DELETE /v1/tenants/:tenantId/members/:memberId': freshMember,
    'PUT /v1/tenants/:tenantId/collections/:collection': async () => ({ params: { collection: `c-${unique()}` }, body: { indexes: [] } }),
    'PUT /v1/tenants/:tenantId/collections/:collection/records/:id': async () => ({ params: { collection: 'notes', id: 'n1' }, body: { text: 'y' } }),
    'GET /v1/tenants/:tenantId/collections/:collection/records/:id': existingRecord,
    'DELETE /v1/tenants/:tenantId/collections/:collection/records/:id': freshRecord,
    'GET /v1/tenants/:tenantId/collections/:collection/records/:id/versions': existingRecord,
    'GET /v1/tenants/:tenantId/collections/:collection/records': async () => ({ params: { collection: 'notes' } }),
    'PUT /v1/tenants/:tenantId/files/*': async () => ({ params: { '*': 'docs/f.txt' }, body: { text: 'y' } }),
    'GET /v1/tenants/:tenantId/files/*': existingFile,
    'DELETE /v1/tenants/:tenantId/files/*': freshFile,
    'GET /v1/tenants/:tenantId/files': async () => ({}),
    'GET /v1/tenants/:tenantId/file-versions/*': existingFile,
    'POST /v1/tenants/:tenantId/file-versions/*': async () => ({ params: { '*': 'docs/f.txt' }, body: {} }),
    'POST /v1/tenants/:tenantId/signed-urls/*': async () => ({ params: { '*': 'docs/f.txt' }, body: {} }),
    'POST /v1/tenants/:tenantId/webhooks': async () => ({ body: { url: 'https://hooks.matrix.example/in', events: ['webhook.test'] } }),
    'GET /v1/tenants/:tenantId/webhooks': async () => ({}),
    'DELETE /v1/tenants/:tenantId/webhooks/:webhookId': async (t) => ({ params: { webhookId: await freshWebhook(`/v1/tenants/${t.tenantId}/webhooks`, t.adminKey) } }),
    'POST /v1/tenants/:tenantId/webhooks/:webhookId/test': async (t) => ({ params: { webhookId: await freshWebhook(`/v1/tenants/${t.tenantId}/webhooks`, t.adminKey) } }),
    'POST /v1/ops/webhooks': async () => ({ body: { url: 'https://hooks.matrix.example/ops', events: ['access.breakglass'] } }),
    'GET /v1/ops/webhooks': async () => ({}),
    'DELETE /v1/ops/webhooks/:webhookId': async () => ({ params: { webhookId: await freshWebhook('/v1/ops/webhooks', await token(subjectOf(SRE_CALLER))) } }),
    'POST /v1/ops/webhooks/:webhookId/test': async () => ({ params: { webhookId: await freshWebhook('/v1/ops/webhooks', await token(subjectOf(SRE_CALLER))) } }),
    'GET /v1/ops/deliveries': async () => ({}),
    'POST /v1/ops/deliveries/:deliveryId/retry': async () => ({ params: { deliveryId: await deadLetter() } }),
    'GET /v1/tenants/:tenantId/audit': async () => ({}),
    // Allowed: 202, or 409 while an earlier cell's export is still being built.
    'POST /v1/tenants/:tenantId/exports': async () => ({ body: { includeVersions: false } }),
    'GET /v1/tenants/:tenantId/exports/:exportId': anExport,
    'POST /v1/tenants/:tenantId/access-requests': async () => ({ body: { reason: 'matrix', ticket: 'M-4', scope: 'read', durationMinutes: 5 } }),
    'GET /v1/tenants/:tenantId/access-requests': async () => ({}),
    'POST /v1/tenants/:tenantId/access-requests/:requestId/approve': decision('approve'),
    'POST /v1/tenants/:tenantId/access-requests/:requestId/deny': decision('deny'),
    'POST /v1/tenants/:tenantId/access-requests/:requestId/break-glass': decision('break-glass'),
    'POST /v1/tenants/:tenantId/access-requests/:requestId/revoke': decision('revoke'),
  };

  async function credential(caller: Caller): Promise<string | undefined> {
    switch (caller.kind) {
      case 'none':
        return undefined;
      case 'api_key':
        return a.keys[caller.scope];
      case 'member':
        return token(`a-${caller.role}`);
      case 'operator':
        return token(subjectOf(caller));
    }
  }

  before(async () => {
    idp = await startIdentityProviders();
    h = await startHarness('sqlite', {
      env: {
        ...idp.env(),
        STRONGROOM_OPERATORS__IDENTITIES: JSON.stringify(operators.map((c) => ({ issuer: idp.issuer, subject: subjectOf(c), roles: [c.role] }))),
      },
    });
    a = await setUpTenant('a');
    b = await setUpTenant('b');
  });
  after(async () => {
    await h.close();
    await idp.close();
  });

  test('the route table holds every route of the OpenAPI document, each with an action of the policy table', async () => {
    const doc = await h.call('GET', '/v1/openapi.json');
    const documented = Object.entries(doc.json.paths as Record<string, Record<string, unknown>>).flatMap(([path, item]) =>
      Object.keys(item).map((method) => `${method.toUpperCase()} ${path.replace('{*}', '*').replace(/\{(\w+)\}/g, ':$1')}`),
    );
    // Routes without a bearer credential: the signed token in the path is the authorization, and
    // the keys that verify deletion certificates are public.
    const unauthenticated = ['GET /v1/signed/:token', 'GET /v1/signed/exports/:token', 'GET /v1/deletion-certificates/keys'];
    for (const route of unauthenticated) assert.ok(documented.includes(route), route);
    const table = h.server.app.routeTable.map((r) => `${r.method} ${r.url}`);
    // HEAD routes authorize like their GET (same action), and are left out of the table.
    assert.deepEqual(documented.filter((r) => !unauthenticated.includes(r) && !r.startsWith('HEAD ')).sort(), [...table].sort());
    for (const route of h.server.app.routeTable) assert.ok(Object.hasOwn(POLICY, route.action), `${route.method} ${route.url}: ${route.action}`);
  });

  test('every route × every caller × own, foreign and no tenant answers as the policy table says', async () => {
    const mismatches: string[] = [];
    let cells = 0;
    for (const route of h.server.app.routeTable) {
      const key = `${route.method} ${route.url}`;
      const fixture = FIXTURES[key];
      assert.ok(fixture, `no matrix fixture for ${key}: teach this test the new route`);
      const rule: Rule = POLICY[route.action as Action];
      const places: Place[] = route.url.includes(':tenantId') ? ['own', 'foreign'] : ['none'];
      for (const caller of CALLERS) {
        for (const place of places) {
          await ensureGrants();
          // A cell that terminated a tenant must not make the next ones read-only.
          await setStatus(a, 'active');
          await setStatus(b, 'active');
          const target = place === 'foreign' ? b : a;
          const { params = {}, body } = await fixture(target, caller);
          const path = route.url
            .replace(/:(\w+)/g, (_, name: string) => encodeURIComponent(name === 'tenantId' ? target.tenantId : params[name]!))
            .replace('*', () => params['*']!);
          const bearer = await credential(caller);
          const res = await h.call(route.method, path, { ...(bearer ? { key: bearer } : {}), ...(body === undefined ? {} : { body }) });
          const want = expected(caller, rule, place);
          // Allowed means authorization let it through: success, or a conflict the operation itself found.
          const got = res.status < 300 || res.status === 409 ? 'allowed' : res.status;
          cells += 1;
          if (got !== want) mismatches.push(`${key} [${route.action}] as ${label(caller)} in ${place} tenant: expected ${want}, got ${res.status} ${res.text.slice(0, 160)}`);
        }
      }
    }
    assert.deepEqual(mismatches, [], `${mismatches.length} of ${cells} cells differ from the policy table`);
    assert.ok(cells >= 22 * CALLERS.length, `${cells} cells`);
  });
});
