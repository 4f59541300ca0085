import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { decodeJwt } from 'jose';
import { certificateJwks } from '../../core/lifecycle/certificate-keys.js';
import { deletionCertificate, purgeEvidence } from '../../core/lifecycle/purge.js';
import type { Core } from '../../core/context.js';
import { principalOf } from '../request-context.js';
import { TenantParams, withErrors } from '../schemas.js';

const Certificate = Type.Object({
  certificate: Type.Record(Type.String(), Type.Unknown(), { description: 'the signed document, decoded for reading' }),
  jws: Type.String({ description: 'the certificate as a compact JWS (EdDSA): verify it with GET /v1/deletion-certificates/keys' }),
});

const Overdue = Type.Object({
  overduePurges: Type.Array(Type.Object({ tenantId: Type.String(), status: Type.String(), purgeDueAt: Type.String({ format: 'date-time' }) }), {
    description: 'terminated tenants past their purge date (and the KMS waiting period) that are not purged: must be empty',
  }),
});

export async function lifecycleRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.get(
    '/v1/tenants/:tenantId/deletion-certificate',
    { config: { action: 'tenant.certificate' }, schema: { summary: "A purged tenant's signed deletion certificate (its owners, operators)", tags: ['lifecycle'], params: TenantParams, response: withErrors({ 200: Certificate }) } },
    async (request) => {
      const { tenantId } = request.params as { tenantId: string };
      const jws = await deletionCertificate(core, principalOf(request), tenantId);
      return { certificate: decodeJwt(jws), jws };
    },
  );
  app.get(
    '/v1/ops/lifecycle',
    { config: { action: 'ops.read' }, schema: { summary: 'Evidence that purges happen on time (operators)', tags: ['ops'], response: withErrors({ 200: Overdue }) } },
    async (request) => purgeEvidence(core, principalOf(request)),
  );
}

/** The published keys that verify deletion certificates: public, like any JWKS. */
export async function certificateKeyRoutes(app: FastifyInstance, { core }: { core: Core }): Promise<void> {
  app.get('/v1/deletion-certificates/keys', { schema: { summary: 'The keys that verify deletion certificates (JWKS)', tags: ['lifecycle'] } }, async () => certificateJwks(core));
}
