import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import type { Core } from '../../core/context.js';
import { getFile, headFile, listFileVersions, listFiles, type ByteRange, type FileRead } from '../../core/files/file-reads.js';
import type { FileView } from '../../core/files/file-rows.js';
import { deleteFile, putFile, restoreFile } from '../../core/files/file-writes.js';
import { readSignedFile, signFileUrl } from '../../core/files/signed-urls.js';
import { storageStatus } from '../../core/files/blob-repairs.js';
import { PayloadTooLargeError } from '../../errors.js';
import { metaOf, principalOf } from '../request-context.js';
import { ErrorResponse, PageQuery, Strict, TenantParams, pageLimit, withErrors } from '../schemas.js';

const FileParams = Strict({ tenantId: TenantParams.properties.tenantId, '*': Type.String({ minLength: 1, maxLength: 1024, description: 'the file path' }) });
type FileParams = Static<typeof FileParams>;
const VersionQuery = Strict({ version: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,14}$' })) });
const FileView = Type.Object({
  path: Type.String(),
  version: Type.Integer(),
  size: Type.Integer(),
  contentType: Type.String(),
  sha256: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
});
const FileVersionView = Type.Intersect([FileView, Type.Object({ op: Type.Union([Type.Literal('put'), Type.Literal('delete')]), current: Type.Boolean() })]);

const addressOf = (request: FastifyRequest) => {
  const params = request.params as FileParams;
  return { tenantId: params.tenantId, path: params['*'] };
};
const versionOf = (request: FastifyRequest) => {
  const { version } = request.query as Static<typeof VersionQuery>;
  return version === undefined ? undefined : Number(version);
};

/** Describes a file version in headers; the body is always an attachment (and the API's CSP forbids any script). */
function fileHeaders(reply: FastifyReply, file: FileView): FastifyReply {
  return reply
    .header('content-type', file.contentType)
    .header('etag', `"${file.version}"`)
    .header('last-modified', new Date(file.createdAt).toUTCString())
    .header('content-sha256', file.sha256)
    .header('accept-ranges', 'bytes')
    .header('content-disposition', 'attachment');
}

/** Sends a body of `size` bytes whole (200), or the range asked for (206). */
export function sendRanged(reply: FastifyReply, size: number, range: ByteRange | null, body: Readable): FastifyReply {
  if (range === null) return reply.header('content-length', size).send(body);
  const { start, end } = range;
  return reply
    .code(206)
    .header('content-range', `bytes ${start}-${end}/${size}`)
    .header('content-length', end - start + 1)
    .send(body);
}

function sendFile(reply: FastifyReply, read: FileRead): FastifyReply {
  return sendRanged(fileHeaders(reply, read.file), read.file.size, read.range, read.body);
}

/** Uploads: the body is the file's bytes, whatever its type, streamed to the core; nothing is parsed. */
async function uploadRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
  app.put(
    '/v1/tenants/:tenantId/files/*',
    {
      config: { action: 'files.write' },
      schema: {
        summary: 'Upload a new version of a file (streamed, any size up to files.maxBytes)',
        tags: ['files'],
        params: FileParams,
        headers: Type.Object({ 'content-sha256': Type.Optional(Type.String({ maxLength: 64 })) }),
        response: withErrors({ 201: FileView, 413: ErrorResponse }),
      },
    },
    async (request, reply) => {
      const declared = Number(request.headers['content-length'] ?? 0);
      if (declared > core.files.maxBytes) throw new PayloadTooLargeError(`a file may hold at most ${core.files.maxBytes} bytes`);
      const contentType = request.headers['content-type'] ?? 'application/octet-stream';
      const sha256 = request.headers['content-sha256'] as string | undefined;
      const file = await putFile(core, principalOf(request), metaOf(request), addressOf(request), request.body as Readable, { contentType, sha256 });
      return reply.code(201).header('etag', `"${file.version}"`).send(file);
    },
  );
}

export async function fileRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  await app.register(uploadRoutes, { core });
  app.get(
    '/v1/tenants/:tenantId/files/*',
    {
      config: { action: 'files.read' },
      exposeHeadRoute: false,
      schema: { summary: 'Download a file (or ?version=N), whole or a Range', tags: ['files'], params: FileParams, querystring: VersionQuery },
    },
    async (request, reply) => sendFile(reply, await getFile(core, principalOf(request), metaOf(request), addressOf(request), { version: versionOf(request), range: request.headers.range })),
  );
  app.head(
    '/v1/tenants/:tenantId/files/*',
    { config: { action: 'files.read' }, schema: { summary: "A file's metadata in headers", tags: ['files'], params: FileParams, querystring: VersionQuery } },
    async (request, reply) => {
      const file = await headFile(core, principalOf(request), metaOf(request), addressOf(request), versionOf(request));
      return fileHeaders(reply, file).header('content-length', file.size).send();
    },
  );
  app.delete(
    '/v1/tenants/:tenantId/files/*',
    { config: { action: 'files.write' }, schema: { summary: 'Delete a file (a tombstone: restorable within the retention window)', tags: ['files'], params: FileParams } },
    async (request, reply) => {
      await deleteFile(core, principalOf(request), metaOf(request), addressOf(request));
      return reply.code(204).send();
    },
  );
  app.get(
    '/v1/tenants/:tenantId/files',
    {
      config: { action: 'files.read' },
      schema: {
        summary: 'List current files under a prefix',
        tags: ['files'],
        params: TenantParams,
        querystring: Strict({ ...PageQuery, prefix: Type.Optional(Type.String({ maxLength: 1024 })) }),
        response: withErrors({ 200: Type.Object({ files: Type.Array(FileView), nextCursor: Type.Union([Type.String(), Type.Null()]) }) }),
      },
    },
    async (request) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      const query = request.query as { prefix?: string; cursor?: string; limit?: string };
      return listFiles(core, principalOf(request), metaOf(request), tenantId, { prefix: query.prefix, cursor: query.cursor, limit: pageLimit(query.limit) });
    },
  );
  app.get(
    '/v1/tenants/:tenantId/file-versions/*',
    {
      config: { action: 'files.read' },
      schema: { summary: 'Every retained version of a file, newest first', tags: ['files'], params: FileParams, response: withErrors({ 200: Type.Object({ versions: Type.Array(FileVersionView) }) }) },
    },
    async (request) => ({ versions: await listFileVersions(core, principalOf(request), metaOf(request), addressOf(request)) }),
  );
  app.post(
    '/v1/tenants/:tenantId/file-versions/*',
    {
      config: { action: 'files.write' },
      schema: {
        summary: 'Restore a version (undelete): it becomes the current version again',
        tags: ['files'],
        params: FileParams,
        body: Strict({ version: Type.Optional(Type.Integer({ minimum: 1 })) }),
        response: withErrors({ 201: FileView }),
      },
    },
    async (request, reply) => {
      const { version } = request.body as { version?: number };
      return reply.code(201).send(await restoreFile(core, principalOf(request), metaOf(request), addressOf(request), version));
    },
  );
  app.post(
    '/v1/tenants/:tenantId/signed-urls/*',
    {
      config: { action: 'files.read' },
      schema: {
        summary: 'A URL that downloads one version of a file without credentials, for at most 5 minutes',
        tags: ['files'],
        params: FileParams,
        body: Strict({
          version: Type.Optional(Type.Integer({ minimum: 1 })),
          expiresInSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
          singleUse: Type.Optional(Type.Boolean()),
        }),
        response: withErrors({ 201: Type.Object({ url: Type.String(), expiresAt: Type.String({ format: 'date-time' }), version: Type.Integer() }) }),
      },
    },
    async (request, reply) => {
      const signed = await signFileUrl(core, principalOf(request), metaOf(request), addressOf(request), request.body as { version?: number; expiresInSeconds?: number; singleUse?: boolean });
      return reply.code(201).send({ url: `https://${request.host}${signed.path}`, expiresAt: signed.expiresAt, version: signed.version });
    },
  );
}

/** Operators: replication health. */
export async function storageRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.get(
    '/v1/ops/storage',
    {
      config: { action: 'ops.read' },
      schema: {
        summary: 'Blob replication: backends, write policy, repair backlog and lag, degraded operations (operators)',
        tags: ['ops'],
        response: withErrors({
          200: Type.Object({
            backends: Type.Array(Type.String()),
            writePolicy: Type.String(),
            repairBacklog: Type.Integer(),
            replicationLagSeconds: Type.Integer(),
            degradedWrites: Type.Integer(),
            degradedDeletes: Type.Integer(),
            fallbackReads: Type.Integer(),
          }),
        }),
      },
    },
    async (request) => storageStatus(core, principalOf(request)),
  );
}

/** Signed downloads: the token in the path is the whole authorization, so these routes take no bearer credential. */
export async function signedFileRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  const Params = Strict({ token: Type.String({ maxLength: 300 }) });
  app.get(
    '/v1/signed/:token',
    { exposeHeadRoute: false, schema: { summary: 'Download through a signed URL', tags: ['files'], params: Params } },
    async (request, reply) => sendFile(reply, await readSignedFile(core, (request.params as Static<typeof Params>).token, 'GET', metaOf(request), request.headers.range)),
  );
}
