import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { listAuditEvents } from '../../core/audit-log.js';
import type { Core } from '../../core/context.js';
import { metaOf, principalOf } from '../request-context.js';
import { PageQuery, TenantParams, pageLimit, withErrors } from '../schemas.js';

const AuditEvent = Type.Object({
  seq: Type.Integer(),
  at: Type.String({ format: 'date-time' }),
  actor: Type.String(),
  action: Type.String(),
  target: Type.String(),
  result: Type.String(),
  requestId: Type.String(),
  sourceIp: Type.String(),
  hash: Type.String({ description: 'SHA-256 chain hash, hex' }),
});
const AuditQuery = Type.Object(PageQuery, { additionalProperties: false });

export async function auditRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.get(
    '/v1/tenants/:tenantId/audit',
    {
      config: { action: 'audit.read' },
      schema: {
        summary: "The tenant's audit log, oldest first",
        tags: ['audit'],
        params: TenantParams,
        querystring: AuditQuery,
        response: withErrors({ 200: Type.Object({ events: Type.Array(AuditEvent), nextCursor: Type.Union([Type.String(), Type.Null()]) }) }),
      },
    },
    async (request) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      const query = request.query as Static<typeof AuditQuery>;
      return listAuditEvents(core, principalOf(request), metaOf(request), tenantId, { cursor: query.cursor, limit: pageLimit(query.limit) });
    },
  );
}
