import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Core } from '../../core/context.js';
import { deleteRecord, getRecord, listRecordVersions, listRecords, putRecord, type JsonObject, type Preconditions } from '../../core/records.js';
import { BadRequestError } from '../../errors.js';
import { metaOf, principalOf } from '../request-context.js';
import { ErrorResponse, PageQuery, Strict, pageLimit, withErrors } from '../schemas.js';
import { CollectionParams } from './collections.js';

const RecordParams = Strict({
  tenantId: CollectionParams.properties.tenantId,
  collection: CollectionParams.properties.collection,
  id: Type.String({ pattern: '^[A-Za-z0-9._~:@-]{1,200}$' }),
});
const Document = Type.Object({}, { additionalProperties: true, description: 'any JSON object' });
const RecordView = Type.Object({
  id: Type.String(),
  version: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  data: Document,
});
const Version = Type.Object({
  version: Type.Integer(),
  op: Type.Union([Type.Literal('put'), Type.Literal('delete')]),
  at: Type.String({ format: 'date-time' }),
  data: Type.Union([Document, Type.Null()]),
});
const ListQuery = Type.Object(PageQuery, {
  additionalProperties: false,
  patternProperties: { '^where\\.[A-Za-z_][A-Za-z0-9_]{0,63}$': Type.String({ maxLength: 4096 }) },
  description: 'where.FIELD=VALUE filters by equality on indexed fields',
});
const PreconditionHeaders = Type.Object({
  'if-match': Type.Optional(Type.String({ maxLength: 64 })),
  'if-none-match': Type.Optional(Type.String({ maxLength: 64 })),
});

const etag = (version: number) => `"${version}"`;
const STRONG_ETAG = /^"([1-9][0-9]{0,9})"$/;

/** Strong ETags only: `If-Match: "3"`, `If-Match: *`, `If-None-Match: *`. */
function preconditions(request: FastifyRequest): Preconditions {
  const headers = request.headers as Static<typeof PreconditionHeaders>;
  const pre: Preconditions = {};
  const ifMatch = headers['if-match'];
  if (ifMatch !== undefined) {
    const match = STRONG_ETAG.exec(ifMatch.trim());
    if (ifMatch.trim() === '*') pre.ifMatch = '*';
    else if (match) pre.ifMatch = Number(match[1]);
    else throw new BadRequestError('If-Match must be * or one strong ETag such as "3"');
  }
  const ifNoneMatch = headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() !== '*') throw new BadRequestError('If-None-Match supports only *');
    pre.ifNoneMatch = '*';
  }
  return pre;
}

export async function recordRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  const path = '/v1/tenants/:tenantId/collections/:collection/records/:id';
  app.put(
    path,
    {
      config: { action: 'records.write' },
      bodyLimit: core.limits.maxRecordBytes,
      schema: {
        summary: 'Create or replace a record (optimistic concurrency with If-Match)',
        tags: ['records'],
        params: RecordParams,
        headers: PreconditionHeaders,
        body: Document,
        response: withErrors({ 200: RecordView, 201: RecordView, 412: ErrorResponse, 413: ErrorResponse }),
      },
    },
    async (request, reply) => {
      const params = request.params as Static<typeof RecordParams>;
      const record = await putRecord(core, principalOf(request), metaOf(request), params, request.body as JsonObject, preconditions(request));
      return reply.code(record.version === 1 ? 201 : 200).header('etag', etag(record.version)).send(record);
    },
  );
  app.get(
    path,
    { config: { action: 'records.read' }, schema: { summary: 'Read a record', tags: ['records'], params: RecordParams, response: withErrors({ 200: RecordView }) } },
    async (request, reply) => {
      const record = await getRecord(core, principalOf(request), metaOf(request), request.params as Static<typeof RecordParams>);
      return reply.header('etag', etag(record.version)).send(record);
    },
  );
  app.delete(
    path,
    { config: { action: 'records.write' }, schema: { summary: 'Delete a record (its history is kept)', tags: ['records'], params: RecordParams, headers: PreconditionHeaders, response: withErrors({ 204: Type.Null(), 412: ErrorResponse }) } },
    async (request, reply) => {
      await deleteRecord(core, principalOf(request), metaOf(request), request.params as Static<typeof RecordParams>, preconditions(request));
      return reply.code(204).send();
    },
  );
  app.get(
    `${path}/versions`,
    { config: { action: 'records.read' }, schema: { summary: 'The history of a record, newest first', tags: ['records'], params: RecordParams, response: withErrors({ 200: Type.Object({ versions: Type.Array(Version) }) }) } },
    async (request) => ({
      versions: await listRecordVersions(core, principalOf(request), metaOf(request), request.params as Static<typeof RecordParams>),
    }),
  );
  app.get(
    '/v1/tenants/:tenantId/collections/:collection/records',
    {
      config: { action: 'records.read' },
      schema: {
        summary: 'List records, optionally by equality on indexed fields',
        tags: ['records'],
        params: CollectionParams,
        querystring: ListQuery,
        response: withErrors({ 200: Type.Object({ records: Type.Array(RecordView), nextCursor: Type.Union([Type.String(), Type.Null()]) }) }),
      },
    },
    async (request) => {
      const { tenantId, collection } = request.params as Static<typeof CollectionParams>;
      const query = request.query as Record<string, string>;
      const where = Object.fromEntries(
        Object.entries(query)
          .filter(([key]) => key.startsWith('where.'))
          .map(([key, value]) => [key.slice('where.'.length), value]),
      );
      return listRecords(core, principalOf(request), metaOf(request), tenantId, collection, {
        where,
        limit: pageLimit(query.limit),
        cursor: query.cursor,
      });
    },
  );
}
