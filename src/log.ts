import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Structured JSON logs. Anything that could carry a credential is redacted wherever it appears, as
 * a second line of defence: request logging already records only the method, route template and
 * status, never a URL with its query string, a header or a body.
 */
export const REDACT_PATHS = [
  'authorization',
  'cookie',
  'apiKey',
  'token',
  'idToken',
  'password',
  'secret',
  '*.authorization',
  '*.cookie',
  '*.apiKey',
  '*.token',
  '*.idToken',
  '*.password',
  '*.secret',
  'headers.authorization',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["x-api-key"]',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { service: 'strongroom' } }, destination);
}

/** Standard error, written asynchronously so a log line never holds up a request; flushed at exit. */
export function stderrDestination(): DestinationStream {
  return pino.destination({ dest: 2, sync: false });
}
