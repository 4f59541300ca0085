import { createHash } from 'node:crypto';
import { encodeAad } from '../crypto/record-cipher.js';

/** One audit event as it is chained. `target` is sealed by the caller: the chain never sees plaintext. */
export interface AuditEvent {
  tenantId: string;
  at: number;
  actor: string;
  action: string;
  target: Buffer;
  result: string;
  requestId: string;
  sourceIp: string;
}

/**
 * hash(n) = SHA-256(hash(n-1) ‖ every field of event n, length-prefixed). Editing, removing or
 * reordering any event changes every hash after it; anyone holding the rows can verify the chain.
 */
export function chainHash(prevHash: Buffer, seq: number, event: AuditEvent): Buffer {
  return createHash('sha256')
    .update(
      encodeAad([
        prevHash,
        event.tenantId,
        seq,
        event.at,
        event.actor,
        event.action,
        event.target,
        event.result,
        event.requestId,
        event.sourceIp,
      ]),
    )
    .digest();
}
