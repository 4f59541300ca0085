import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { Logger } from 'pino';
import type { Core, Principal } from '../core/context.js';
import type { Authenticator } from '../identity/authenticate.js';
import { handleError, handleFrameworkError, handleNotFound } from './errors.js';
import { SECURITY_HEADERS } from './security-headers.js';
import { secureContextOptions } from './tls/tls-policy.js';
import type { Action } from '../policy/authorize.js';
import { registerRoutes, type RouteAction } from './routes/index.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** The authorization action the route performs; every API route names one. */
    action?: Action;
  }
}

export interface AppOptions {
  core: Core;
  authenticator: Authenticator;
  logger: Logger;
  tls: { cert: Buffer | string; key: Buffer | string };
  bodyLimitBytes: number;
  trustProxy: boolean;
  publicUrl: string;
}

/** The HTTPS API: TLS policy, security headers, request ids, one error shape, OpenAPI, routes. */
export type HttpsApp = FastifyInstance<HttpsServer, IncomingMessage, ServerResponse, Logger> & { routeTable: RouteAction[] };

export async function buildApp(options: AppOptions): Promise<HttpsApp> {
  const app = Fastify({
    https: secureContextOptions(options.tls),
    loggerInstance: options.logger,
    // One line per request from onResponse below, with the route template instead of the URL.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    bodyLimit: options.bodyLimitBytes,
    trustProxy: options.trustProxy,
    return503OnClosing: true,
    // Record ids may be 200 characters, up to 3 bytes each once percent-encoded.
    routerOptions: { maxParamLength: 600 },
    // Router errors (bad percent-encoding, over-long segments) get the one JSON error shape too.
    frameworkErrors: handleFrameworkError,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false } },
  });
  app.decorateRequest('principal', null);
  app.setErrorHandler(handleError);
  app.setNotFoundHandler(handleNotFound);

  app.addHook('onSend', async (request, reply) => {
    void reply.headers(SECURITY_HEADERS);
    void reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      { reqId: request.id, method: request.method, route: request.routeOptions.url ?? 'unknown', status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
      'request',
    );
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Strongroom API', version: '1' },
      servers: [{ url: options.publicUrl }],
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  const routeTable: RouteAction[] = [];
  app.decorate('routeTable', routeTable);
  await app.register(registerRoutes, { core: options.core, authenticator: options.authenticator, routeTable });
  app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app as unknown as HttpsApp;
}
