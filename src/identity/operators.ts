import { createHash } from 'node:crypto';
import type { Config } from '../config/schema.js';
import type { OperatorRole, VerifiedIdentity } from '../core/context.js';
import { base32 } from '../core/ids.js';

export interface Operator {
  operatorId: string;
  roles: OperatorRole[];
}

/** The deployment's staff, from `operators.identities`, and what counts as their second factor. */
export interface OperatorRealm {
  /** The operator this identity is, or null when it is on no allow-list entry. */
  resolve(identity: VerifiedIdentity): Operator | null;
  /** Whether the token proves a second factor, by `operators.mfaClaims` (not the issuer's own mapping). */
  hasMfa(identity: VerifiedIdentity): boolean;
}

/**
 * A stable pseudonym for (issuer, subject): tenants' audit logs name operators by it, so staff
 * identities stay out of customer-visible records while the deployment can still tell who it was.
 */
export const operatorId = (issuer: string, subject: string) =>
  `op_${base32(createHash('sha256').update(`${issuer}\n${subject}`, 'utf8').digest()).slice(0, 16)}`;

export function createOperatorRealm(operators: Config['operators']): OperatorRealm {
  const amr = new Set(operators.mfaClaims.amr);
  const secondFactors = new Set(operators.mfaClaims.firebaseSecondFactors);
  const matches = (entry: Config['operators']['identities'][number], identity: VerifiedIdentity) => {
    if (entry.issuer !== identity.issuer) return false;
    if (entry.subject !== undefined) return entry.subject === identity.subject;
    // A domain admits only addresses the provider verified, compared on the whole domain.
    const email = (identity.emailVerified && identity.email?.toLowerCase()) || '';
    const at = email.lastIndexOf('@');
    return at > 0 && email.slice(at + 1) === entry.emailDomain;
  };
  return {
    resolve(identity) {
      const roles = new Set(operators.identities.filter((entry) => matches(entry, identity)).flatMap((entry) => entry.roles));
      if (roles.size === 0) return null;
      return { operatorId: operatorId(identity.issuer, identity.subject), roles: [...roles].sort() };
    },
    hasMfa(identity) {
      return (identity.secondFactor !== null && secondFactors.has(identity.secondFactor)) || identity.amr.some((value) => amr.has(value));
    },
  };
}
