import { createHmac } from 'node:crypto';

/**
 * The stored key of a record: HMAC-SHA256 of its id under the collection's id key. Ids chosen by
 * tenants (an e-mail address, say) never reach the database in the clear; equal ids still find
 * the same row.
 */
export function recordKeyFor(idKey: Buffer, id: string): Buffer {
  return createHmac('sha256', idKey).update(id, 'utf8').digest();
}
