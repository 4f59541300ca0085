import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { RateLimitedError, StrongroomError, type ErrorCode } from '../errors.js';
import { isDatabaseUnavailable } from '../store/db/unavailable.js';
import { SECURITY_HEADERS } from './security-headers.js';

/** The one place an error code becomes an HTTP status. */
const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  egress_denied: 403,
  mfa_required: 403,
  not_found: 404,
  conflict: 409,
  precondition_failed: 412,
  payload_too_large: 413,
  range_not_satisfiable: 416,
  unsupported_media_type: 415,
  rate_limited: 429,
  unavailable: 503,
  integrity: 500,
  recovery_failed: 422,
  invalid_config: 500,
  internal: 500,
};

const CODE_FOR_STATUS: Record<number, ErrorCode> = {
  400: 'bad_request',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  405: 'bad_request',
  409: 'conflict',
  412: 'precondition_failed',
  413: 'payload_too_large',
  416: 'range_not_satisfiable',
  422: 'recovery_failed',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  503: 'unavailable',
};

export interface ErrorBody {
  error: { code: ErrorCode; message: string; requestId: string };
}

export function errorBody(code: ErrorCode, message: string, requestId: string): ErrorBody {
  return { error: { code, message, requestId } };
}

/** Framework errors (validation, body parsing, limits) keep their 4xx status; anything unknown is a 500 that says nothing. */
function classify(error: FastifyError | StrongroomError): { status: number; code: ErrorCode; message: string } {
  if (error instanceof StrongroomError) {
    const status = STATUS[error.code];
    // Our own 5xx messages may name infrastructure (a token, a host): the caller learns only what to do.
    const hidden =
      status === 503
        ? 'a service this request needs is unavailable; retry later'
        : error.code === 'integrity'
          ? 'stored data failed its integrity check; nothing of it was returned'
          : 'internal error';
    return { status, code: error.code, message: status >= 500 ? hidden : error.message };
  }
  if (isDatabaseUnavailable(error)) {
    return { status: 503, code: 'unavailable', message: 'the database is unavailable; nothing was acknowledged, retry later' };
  }
  if (error.validation) {
    return { status: 400, code: 'bad_request', message: `${error.validationContext ?? 'request'}${error.message.replace(/^(body|querystring|params|headers)/, '')}` };
  }
  const status = error.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    return { status, code: CODE_FOR_STATUS[status] ?? 'bad_request', message: error.message };
  }
  return { status: 500, code: 'internal', message: 'internal error' };
}

export function handleError(error: FastifyError | StrongroomError, request: FastifyRequest, reply: FastifyReply): void {
  const { status, code, message } = classify(error);
  if (status >= 500) request.log.error({ err: error }, 'request failed');
  if (status === 401) void reply.header('www-authenticate', 'Bearer');
  if (error instanceof RateLimitedError) void reply.header('retry-after', String(error.retryAfterSeconds));
  void reply.code(status).send(errorBody(code, message, request.id));
}

export function handleNotFound(request: FastifyRequest, reply: FastifyReply): void {
  void reply.code(404).send(errorBody('not_found', 'no such route', request.id));
}

/** Errors the router raises before any route runs. Their messages echo the raw URL, so they are replaced. */
export function handleFrameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const message = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path segment is too long' : 'the URL is not valid';
  // The app's onSend hooks do not run for these replies: set what they would.
  void reply.code(400).headers(SECURITY_HEADERS).header('x-request-id', request.id).send(errorBody('bad_request', message, request.id));
}
