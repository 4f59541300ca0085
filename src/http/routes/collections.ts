import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { declareCollection } from '../../core/collections.js';
import type { Core } from '../../core/context.js';
import { metaOf, principalOf } from '../request-context.js';
import { ErrorResponse, Strict, TenantParams, withErrors } from '../schemas.js';

export const CollectionParams = Strict({
  tenantId: TenantParams.properties.tenantId,
  collection: Type.String({ pattern: '^[a-z][a-z0-9_-]{0,62}$' }),
});
const IndexRequest = Strict({
  field: Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]{0,63}$' }),
  bits: Type.Optional(Type.Integer({ minimum: 1, maximum: 32 })),
  expectedRows: Type.Optional(Type.Integer({ minimum: 1, maximum: 1e12, description: 'expected number of records, for the blind-index planner' })),
});
const DeclareBody = Strict({ indexes: Type.Array(IndexRequest, { maxItems: 32 }) });
const Collection = Type.Object({
  name: Type.String(),
  indexes: Type.Array(Type.Object({ field: Type.String(), bits: Type.Integer(), expectedRows: Type.Integer() })),
});

export async function collectionRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.put(
    '/v1/tenants/:tenantId/collections/:collection',
    {
      config: { action: 'collections.write' },
      schema: {
        summary: 'Declare a collection and its indexed fields (blind indexes sized by the planner)',
        tags: ['collections'],
        params: CollectionParams,
        body: DeclareBody,
        response: withErrors({ 200: Collection, 201: Collection, 409: ErrorResponse }),
      },
    },
    async (request, reply) => {
      const { tenantId, collection } = request.params as Static<typeof CollectionParams>;
      const { indexes } = request.body as Static<typeof DeclareBody>;
      const result = await declareCollection(core, principalOf(request), metaOf(request), tenantId, collection, indexes);
      return reply.code(result.created ? 201 : 200).send({ name: result.name, indexes: result.spec.indexes });
    },
  );
}
