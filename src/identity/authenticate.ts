import { UnauthenticatedError } from '../errors.js';
import { authenticateApiKey } from '../core/api-keys.js';
import type { Core, Principal } from '../core/context.js';

const BEARER = /^Bearer ([\x21-\x7e]{1,4096})$/;

/**
 * Who is calling, from the Authorization header. API keys are the machine-to-machine path;
 * Firebase and OIDC bearer tokens join here in the authentication issue.
 */
export async function authenticate(core: Core, authorization: string | undefined): Promise<Principal> {
  const match = authorization === undefined ? null : BEARER.exec(authorization);
  if (!match) throw new UnauthenticatedError('an Authorization: Bearer credential is required');
  return authenticateApiKey(core, match[1]!);
}
