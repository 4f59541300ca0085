import { BadRequestError, ConflictError, MfaRequiredError, NotFoundError } from '../errors.js';
import { encodeAad, openRecord, recordKeyId, sealRecord } from '../crypto/record-cipher.js';
import { authorize } from '../policy/authorize.js';
import type { Actor, Core, MemberRole, Principal, RequestMeta, VerifiedIdentity } from './context.js';
import { auditInTx, auditRead, plainTarget } from './audit-events.js';
import { randomId } from './ids.js';
import { memberEmailKey, tenantDataKey, tenantDataKeyById } from './tenant-keys.js';
import { SHREDDED_STATUSES } from './tenants.js';
import { recordKeyFor } from '../crypto/record-key.js';

export const ROLES: readonly MemberRole[] = ['owner', 'admin', 'member', 'viewer'];
export const MEMBER_ID = /^m_[a-z2-7]{16}$/;
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

/**
 * A member is a person in a tenant, with a role. Until the authentication issue links an identity
 * (issuer, subject) the member is `invited`; the e-mail address is the only personal data kept, and
 * it is encrypted under the tenant's data key.
 */
export interface MemberView {
  memberId: string;
  email: string;
  role: MemberRole;
  status: string;
  createdAt: string;
}

export const emailAad = (tenantId: string, memberId: string) => encodeAad(['strongroom/member-email', tenantId, memberId]);

export async function inviteMember(
  core: Core,
  principal: Principal,
  meta: RequestMeta,
  tenantId: string,
  request: { email: string; role: MemberRole },
): Promise<MemberView> {
  authorize(principal, 'members.manage', { tenantId });
  if (!EMAIL.test(request.email)) throw new BadRequestError('invalid e-mail address');
  const email = request.email.toLowerCase();
  const dataKey = await tenantDataKey(core, tenantId, principal);
  const emailToken = recordKeyFor(await memberEmailKey(core, tenantId, principal), email);
  const memberId = `m_${randomId(10)}`;
  const emailEnc = sealRecord(dataKey, emailAad(tenantId, memberId), Buffer.from(email, 'utf8'));
  return core.committer.submit(tenantId, async (tx, batch) => {
    const now = core.now();
    const existing = await tx
      .selectFrom('members')
      .select('member_id')
      .where('tenant_id', '=', tenantId)
      .where('email_token', '=', emailToken)
      .executeTakeFirst();
    if (existing) throw new ConflictError('this e-mail address is already a member or invited');
    await tx
      .insertInto('members')
      .values({ tenant_id: tenantId, member_id: memberId, role: request.role, issuer: null, subject: null, email_enc: emailEnc, email_token: emailToken, status: 'invited', created_at: now })
      .execute();
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: 'member.invite', target: plainTarget(`member:${memberId} role:${request.role}`), result: 'ok' });
    return { memberId, email, role: request.role, status: 'invited', createdAt: new Date(now).toISOString() };
  });
}

export async function listMembers(core: Core, principal: Principal, meta: RequestMeta, tenantId: string): Promise<MemberView[]> {
  authorize(principal, 'members.read', { tenantId });
  const rows = await core.db.reader
    .selectFrom('members')
    .select(['member_id', 'role', 'status', 'email_enc', 'created_at'])
    .where('tenant_id', '=', tenantId)
    .orderBy('created_at')
    .execute();
  const members: MemberView[] = [];
  for (const row of rows) {
    let email = '';
    if (row.email_enc) {
      const key = await tenantDataKeyById(core, tenantId, recordKeyId(row.email_enc), principal);
      email = openRecord(key, emailAad(tenantId, row.member_id), row.email_enc).toString('utf8');
    }
    members.push({ memberId: row.member_id, email, role: row.role as MemberRole, status: row.status, createdAt: new Date(Number(row.created_at)).toISOString() });
  }
  await auditRead(core, principal, meta, { tenantId, action: 'member.list', target: plainTarget('members'), result: 'ok' });
  return members;
}

export async function removeMember(core: Core, principal: Principal, meta: RequestMeta, tenantId: string, memberId: string): Promise<void> {
  authorize(principal, 'members.manage', { tenantId });
  if (!MEMBER_ID.test(memberId)) throw new NotFoundError('member not found');
  await core.committer.submit(tenantId, async (tx, batch) => {
    const member = await tx
      .selectFrom('members')
      .select('role')
      .where('tenant_id', '=', tenantId)
      .where('member_id', '=', memberId)
      .executeTakeFirst();
    if (!member) throw new NotFoundError('member not found');
    if (member.role === 'owner') {
      const owners = await tx
        .selectFrom('members')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('tenant_id', '=', tenantId)
        .where('role', '=', 'owner')
        .executeTakeFirstOrThrow();
      if (Number(owners.n) <= 1) throw new ConflictError('the last owner of a tenant cannot be removed');
    }
    await tx.deleteFrom('members').where('tenant_id', '=', tenantId).where('member_id', '=', memberId).execute();
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: 'member.remove', target: plainTarget(`member:${memberId}`), result: 'ok' });
  });
}

type MemberPrincipal = Extract<Principal, { kind: 'member' }>;

/** Who looks up an invitation: nobody is authenticated yet, the sign-in is. */
const SIGN_IN: Actor = { kind: 'system', name: 'sign-in' };

/**
 * The member a verified identity is in this tenant: linked by (issuer, subject), or, the first time,
 * by claiming the invitation sent to the e-mail address the provider says it verified. Unverified
 * addresses claim nothing, so nobody can take an invitation by typing someone's address.
 */
export async function resolveMember(core: Core, tenantId: string, identity: VerifiedIdentity, meta: RequestMeta): Promise<MemberPrincipal | null> {
  const tenant = await core.db.reader.selectFrom('tenants').select(['require_mfa', 'status']).where('id', '=', tenantId).executeTakeFirst();
  if (!tenant) return null;
  // Checked once membership is known (strangers learn nothing of the policy) and before an
  // invitation is claimed: a password alone opens nothing in such a tenant.
  const enforceMfa = () => {
    if (tenant.require_mfa === 1 && !identity.mfa) throw new MfaRequiredError();
  };
  const linked = await core.db.reader
    .selectFrom('members')
    .select(['member_id', 'role'])
    .where('tenant_id', '=', tenantId)
    .where('issuer', '=', identity.issuer)
    .where('subject', '=', identity.subject)
    .where('status', '=', 'active')
    .executeTakeFirst();
  if (linked) {
    enforceMfa();
    return { kind: 'member', tenantId, memberId: linked.member_id, role: linked.role as MemberRole, tenantStatus: tenant.status };
  }
  // A purged tenant's invitations went with its key: nothing is left to claim.
  if (!identity.emailVerified || !identity.email || SHREDDED_STATUSES.includes(tenant.status)) return null;
  const emailToken = recordKeyFor(await memberEmailKey(core, tenantId, SIGN_IN), identity.email.toLowerCase());
  return core.committer.submit(tenantId, async (tx, batch) => {
    const invited = await tx
      .selectFrom('members')
      .select(['member_id', 'role'])
      .where('tenant_id', '=', tenantId)
      .where('email_token', '=', emailToken)
      .where('status', '=', 'invited')
      .executeTakeFirst();
    if (!invited) return null;
    enforceMfa();
    await tx
      .updateTable('members')
      .set({ issuer: identity.issuer, subject: identity.subject, status: 'active' })
      .where('tenant_id', '=', tenantId)
      .where('member_id', '=', invited.member_id)
      .execute();
    const principal: MemberPrincipal = { kind: 'member', tenantId, memberId: invited.member_id, role: invited.role as MemberRole, tenantStatus: tenant.status };
    await auditInTx(tx, batch, core, principal, meta, { tenantId, action: 'member.claim', target: plainTarget(`member:${invited.member_id}`), result: 'ok' });
    return principal;
  });
}

const NOTIFIER: Actor = { kind: 'system', name: 'notifications' };

/** The e-mail addresses a tenant's notifications go to: its active owners and admins. */
export async function notificationRecipients(core: Core, tenantId: string): Promise<string[]> {
  const rows = await core.db.reader
    .selectFrom('members')
    .select(['member_id', 'email_enc'])
    .where('tenant_id', '=', tenantId)
    .where('role', 'in', ['owner', 'admin'])
    .where('status', '=', 'active')
    .execute();
  const emails: string[] = [];
  for (const row of rows) {
    if (!row.email_enc) continue;
    const key = await tenantDataKeyById(core, tenantId, recordKeyId(row.email_enc), NOTIFIER);
    emails.push(openRecord(key, emailAad(tenantId, row.member_id), row.email_enc).toString('utf8'));
  }
  return emails;
}
