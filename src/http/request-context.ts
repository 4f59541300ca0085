import type { FastifyRequest } from 'fastify';
import type { Principal, RequestMeta } from '../core/context.js';
import { UnauthenticatedError } from '../errors.js';

export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new UnauthenticatedError();
  return request.principal;
}

export function metaOf(request: FastifyRequest): RequestMeta {
  return { requestId: request.id, sourceIp: request.ip };
}
