import { Type, type TSchema } from '@sinclair/typebox';

export const ErrorResponse = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), requestId: Type.String() }),
});

/** Responses every authenticated route may give, so the OpenAPI document lists them. */
export const errorResponses: Record<number, TSchema> = {
  400: ErrorResponse,
  401: ErrorResponse,
  403: ErrorResponse,
  404: ErrorResponse,
};

export const TenantParams = Type.Object({ tenantId: Type.String({ pattern: '^t_[a-z2-7]{16}$' }) }, { additionalProperties: false });

export const PageQuery = {
  limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,3}$', description: 'page size' })),
  cursor: Type.Optional(Type.String({ maxLength: 128, description: 'opaque cursor from the previous page' })),
};

export const pageLimit = (limit: string | undefined) => (limit === undefined ? undefined : Number(limit));

export const Strict = <T extends Parameters<typeof Type.Object>[0]>(props: T, description?: string) =>
  Type.Object(props, { additionalProperties: false, ...(description ? { description } : {}) });

export const withErrors = (responses: Record<number, TSchema>): Record<number, TSchema> => ({ ...errorResponses, ...responses });
