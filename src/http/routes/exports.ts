import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Core } from '../../core/context.js';
import { getExport, readSignedExport, requestExport, type ExportView } from '../../core/lifecycle/exports.js';
import { metaOf, principalOf } from '../request-context.js';
import { Strict, TenantParams, withErrors } from '../schemas.js';
import { sendRanged } from './files.js';

const ExportParams = Strict({ tenantId: TenantParams.properties.tenantId, exportId: Type.String({ pattern: '^x_[a-z2-7]{16}$' }) });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);
const Export = Type.Object({
  exportId: Type.String(),
  status: Type.Union(['building', 'ready', 'failed', 'expired'].map((s) => Type.Literal(s))),
  includeVersions: Type.Boolean(),
  createdAt: Type.String({ format: 'date-time' }),
  readyAt: Nullable(Type.String({ format: 'date-time' })),
  expiresAt: Nullable(Type.String({ format: 'date-time', description: 'when the archive is deleted' })),
  size: Nullable(Type.Integer({ description: 'bytes of the tar archive' })),
  sha256: Nullable(Type.String({ description: 'SHA-256 (hex) of the tar archive' })),
  manifestSha256: Nullable(Type.String({ description: 'SHA-256 (hex) of its manifest.json' })),
  error: Nullable(Type.String()),
  download: Nullable(
    Type.Object(
      { url: Type.String(), expiresAt: Type.String({ format: 'date-time' }) },
      { description: 'while ready: downloads the archive without credentials (Range supported), until expiresAt' },
    ),
  ),
});
const ExportBody = Strict({ includeVersions: Type.Optional(Type.Boolean({ description: 'every retained version of records and files too' })) });

const viewFor = (request: FastifyRequest, view: ExportView) => ({ ...view, download: view.download && { url: `https://${request.host}${view.download.path}`, expiresAt: view.download.expiresAt } });

export async function exportRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.post(
    '/v1/tenants/:tenantId/exports',
    {
      config: { action: 'tenant.export' },
      schema: {
        summary: "Export all of the tenant's records and files into one archive, built in the background (also while terminated)",
        tags: ['lifecycle'],
        params: TenantParams,
        body: ExportBody,
        response: withErrors({ 202: Export }),
      },
    },
    async (request, reply) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      const view = await requestExport(core, principalOf(request), metaOf(request), tenantId, request.body as Static<typeof ExportBody>);
      return reply.code(202).send(viewFor(request, view));
    },
  );
  app.get(
    '/v1/tenants/:tenantId/exports/:exportId',
    {
      config: { action: 'tenant.export' },
      schema: { summary: "An export's status and, once ready, a signed URL to download it", tags: ['lifecycle'], params: ExportParams, response: withErrors({ 200: Export }) },
    },
    async (request) => {
      const { tenantId, exportId } = request.params as Static<typeof ExportParams>;
      return viewFor(request, await getExport(core, principalOf(request), metaOf(request), tenantId, exportId));
    },
  );
}

/** The archive's download: the signed token in the path is the whole authorization, so no bearer credential. */
export async function signedExportRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  const Params = Strict({ token: Type.String({ maxLength: 200 }) });
  app.get(
    '/v1/signed/exports/:token',
    { exposeHeadRoute: false, schema: { summary: 'Download an export archive through its signed URL, whole or a Range', tags: ['lifecycle'], params: Params } },
    async (request, reply) => {
      const read = await readSignedExport(core, (request.params as Static<typeof Params>).token, metaOf(request), request.headers.range);
      reply
        .header('content-type', 'application/x-tar')
        .header('content-disposition', `attachment; filename="${read.exportId}.tar"`)
        .header('etag', `"${read.sha256}"`)
        .header('accept-ranges', 'bytes');
      return sendRanged(reply, read.size, read.range, read.body);
    },
  );
}
