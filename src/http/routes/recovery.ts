import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Core } from '../../core/context.js';
import type { RestoreTarget } from '../../core/recovery/restore.js';
import { recoveryStatus } from '../../core/recovery/status.js';
import { restoreTenantAsOperator } from '../../core/recovery/tenant-restore.js';
import { BadRequestError } from '../../errors.js';
import { metaOf, principalOf } from '../request-context.js';
import { Strict, TenantParams, withErrors } from '../schemas.js';

const Iso = Type.String({ format: 'date-time' });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

const RestoreBody = Strict(
  {
    toSeq: Type.Optional(Type.Integer({ minimum: 0, description: 'a journal sequence: the state right after that committed operation' })),
    toTime: Type.Optional(Type.String({ format: 'date-time', description: 'the state after the last operation committed at or before this time' })),
  },
  'exactly one of toSeq and toTime',
);

const RestoreResult = Type.Object({
  tenantId: Type.String(),
  seq: Type.Integer(),
  at: Nullable(Iso),
  undoBookmark: Type.Integer({ description: 'restore to this sequence to undo this restore' }),
  rows: Type.Record(Type.String(), Type.Integer()),
});

const Status = Type.Object({
  shipping: Type.Object({
    timeline: Type.String(),
    journalSeq: Type.Integer(),
    shippedSeq: Type.Integer(),
    pendingEntries: Type.Integer(),
    lagMs: Type.Integer(),
    lastShippedAt: Nullable(Iso),
  }),
  backups: Type.Object({
    count: Type.Integer(),
    latest: Nullable(Type.Object({ backupId: Type.String(), seq: Type.Integer(), takenAt: Iso, bytes: Type.Integer(), parts: Type.Integer() })),
  }),
  drills: Type.Object({
    lastVerifiedRestoreAgeSeconds: Nullable(Type.Integer()),
    recent: Type.Array(
      Type.Object({ drillId: Type.String(), kind: Type.String(), tenantId: Nullable(Type.String()), ok: Type.Boolean(), seq: Type.Integer(), durationMs: Type.Integer(), finishedAt: Iso, detail: Type.String() }),
    ),
  }),
});

function targetOf(body: Static<typeof RestoreBody>): RestoreTarget {
  if ((body.toSeq === undefined) === (body.toTime === undefined)) throw new BadRequestError('give exactly one of toSeq and toTime');
  return body.toSeq !== undefined ? { seq: body.toSeq } : { time: Date.parse(body.toTime!) };
}

/** Operators: recovery status, and restoring one tenant's records and files in place. */
export async function recoveryRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.get(
    '/v1/ops/recovery',
    { config: { action: 'ops.read' }, schema: { summary: 'Shipping lag, the newest backup and the restore drills (operators)', tags: ['ops'], response: withErrors({ 200: Status }) } },
    async (request) => recoveryStatus(core, principalOf(request)),
  );
  app.post(
    '/v1/ops/tenants/:tenantId/restore',
    {
      config: { action: 'ops.restore' },
      schema: {
        summary: "Restore a tenant's records and files in place to a point in time; audited in the tenant's log, undone by restoring to the undo bookmark (operators)",
        tags: ['ops'],
        params: TenantParams,
        body: RestoreBody,
        response: withErrors({ 200: RestoreResult }),
      },
    },
    async (request) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      return restoreTenantAsOperator(core, principalOf(request), metaOf(request), tenantId, targetOf(request.body as Static<typeof RestoreBody>));
    },
  );
}
