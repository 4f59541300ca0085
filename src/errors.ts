/**
 * Typed errors with stable codes. Every layer throws these; `http/errors.ts` maps each code to an
 * HTTP status in one place, and the CLI prints the message.
 */
export type ErrorCode =
  | 'bad_request'
  | 'unauthenticated'
  | 'forbidden'
  | 'egress_denied'
  | 'mfa_required'
  | 'not_found'
  | 'conflict'
  | 'precondition_failed'
  | 'payload_too_large'
  | 'range_not_satisfiable'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'unavailable'
  | 'integrity'
  | 'recovery_failed'
  | 'invalid_config'
  | 'internal';

export class StrongroomError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class BadRequestError extends StrongroomError {
  constructor(message: string) {
    super('bad_request', message);
  }
}

export class UnauthenticatedError extends StrongroomError {
  constructor(message = 'valid credentials are required') {
    super('unauthenticated', message);
  }
}

export class ForbiddenError extends StrongroomError {
  constructor(message = 'not allowed') {
    super('forbidden', message);
  }
}

/** The tenant requires a second factor and the caller's token carries no evidence of one. */
export class MfaRequiredError extends StrongroomError {
  constructor(message = 'this tenant requires multi-factor authentication: sign in with a second factor') {
    super('mfa_required', message);
  }
}

export class NotFoundError extends StrongroomError {
  constructor(message = 'not found') {
    super('not_found', message);
  }
}

export class ConflictError extends StrongroomError {
  constructor(message: string) {
    super('conflict', message);
  }
}

export class PreconditionFailedError extends StrongroomError {
  constructor(message: string) {
    super('precondition_failed', message);
  }
}

export class PayloadTooLargeError extends StrongroomError {
  constructor(message: string) {
    super('payload_too_large', message);
  }
}

/** A Range header that asks for bytes the file does not have. */
export class RangeNotSatisfiableError extends StrongroomError {
  constructor(readonly size: number) {
    super('range_not_satisfiable', `the file has ${size} bytes`);
  }
}

/** Too many failed attempts; `retryAfterSeconds` goes in the Retry-After header. */
export class RateLimitedError extends StrongroomError {
  constructor(readonly retryAfterSeconds: number) {
    super('rate_limited', 'too many failed authentication attempts; retry later');
  }
}

export class UnavailableError extends StrongroomError {
  constructor(message: string) {
    super('unavailable', message);
  }
}

/**
 * The egress policy refuses an outbound connection (a webhook URL, an SMTP host): the host is not in
 * `egress.allowedHosts`, or resolves to an internal address. Retrying cannot help. `host` is null
 * when the URL could not be parsed.
 */
export class EgressDeniedError extends StrongroomError {
  constructor(
    readonly host: string | null,
    reason: string,
  ) {
    super('egress_denied', host === null ? `egress refused: ${reason}` : `egress to ${host} refused: ${reason}`);
  }
}

/** Why an allowed outbound request failed; each may pass on a later attempt. */
export type EgressFailure = 'dns' | 'connection' | 'timeout' | 'too_large';

/** An allowed outbound request that did not complete: no address, no connection, no answer in time, or too long an answer. */
export class EgressFailedError extends UnavailableError {
  constructor(
    readonly host: string,
    readonly reason: EgressFailure,
    detail: string,
  ) {
    super(`egress to ${host} failed: ${detail}`);
  }
}

/** Stored data failed an integrity check: a broken hash chain, a ciphertext that does not authenticate. */
export class IntegrityError extends StrongroomError {
  constructor(message: string) {
    super('integrity', message);
  }
}

/**
 * A restore or drill that cannot give what was asked: a target outside the retained window, a gap
 * in the change log, a part that fails verification. The message names the part and the reason.
 */
export class RecoveryError extends StrongroomError {
  constructor(message: string) {
    super('recovery_failed', message);
  }
}

export class ConfigError extends StrongroomError {
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super('invalid_config', `invalid configuration: ${key}: ${reason}`);
  }
}
