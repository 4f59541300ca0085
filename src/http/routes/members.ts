import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Core } from '../../core/context.js';
import { inviteMember, listMembers, removeMember } from '../../core/members.js';
import { metaOf, principalOf } from '../request-context.js';
import { ErrorResponse, Strict, TenantParams, withErrors } from '../schemas.js';

const Role = Type.Union([Type.Literal('owner'), Type.Literal('admin'), Type.Literal('member'), Type.Literal('viewer')]);
const Member = Type.Object({ memberId: Type.String(), email: Type.String(), role: Role, status: Type.String(), createdAt: Type.String({ format: 'date-time' }) });
const InviteBody = Strict({ email: Type.String({ minLength: 3, maxLength: 320 }), role: Role });
const MemberParams = Strict({ tenantId: TenantParams.properties.tenantId, memberId: Type.String({ pattern: '^m_[a-z2-7]{16}$' }) });

export async function memberRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.post(
    '/v1/tenants/:tenantId/members',
    { config: { action: 'members.manage' }, schema: { summary: 'Invite a member by e-mail with a role', tags: ['members'], params: TenantParams, body: InviteBody, response: withErrors({ 201: Member }) } },
    async (request, reply) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      const member = await inviteMember(core, principalOf(request), metaOf(request), tenantId, request.body as Static<typeof InviteBody>);
      return reply.code(201).send(member);
    },
  );
  app.get(
    '/v1/tenants/:tenantId/members',
    { config: { action: 'members.read' }, schema: { summary: 'List members', tags: ['members'], params: TenantParams, response: withErrors({ 200: Type.Object({ members: Type.Array(Member) }) }) } },
    async (request) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      return { members: await listMembers(core, principalOf(request), metaOf(request), tenantId) };
    },
  );
  app.delete(
    '/v1/tenants/:tenantId/members/:memberId',
    { config: { action: 'members.manage' }, schema: { summary: 'Remove a member', tags: ['members'], params: MemberParams, response: withErrors({ 204: Type.Null(), 409: ErrorResponse }) } },
    async (request, reply) => {
      const { tenantId, memberId } = request.params as Static<typeof MemberParams>;
      await removeMember(core, principalOf(request), metaOf(request), tenantId, memberId);
      return reply.code(204).send();
    },
  );
}
