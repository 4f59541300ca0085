/**
 * Errors that mean the database could not be reached or dropped the connection, as opposed to a
 * query it refused: the client may retry later (503), and no write was acknowledged.
 */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND']);
/**
 * SQLSTATE classes 08 (connection exception) and 57P (operator intervention: shutdown, crash);
 * SQLite's busy (lock timeout), full-disk and I/O errors.
 */
const STATE = /^(08|57P|SQLITE_(BUSY|FULL|IOERR|CANTOPEN|READONLY))/;

export function isDatabaseUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || STATE.test(code))) return true;
  // node-postgres reports a connection that ended mid-query with this message and no code.
  return /Connection terminated|connection is closed|Client has encountered a connection error/i.test(error.message);
}
