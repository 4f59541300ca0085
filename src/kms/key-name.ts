import { BadRequestError } from '../errors.js';

/** KMS key names every provider accepts: lower case, digits and `._:-`, never a path or `__proto__`. */
export const KEY_NAME = /^[a-z0-9][a-z0-9._:-]{0,127}$/;

export function assertKeyName(keyName: string): void {
  if (typeof keyName !== 'string' || !KEY_NAME.test(keyName)) {
    throw new BadRequestError(`a KMS key name matches ${KEY_NAME.source}`);
  }
}
