import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { CompactSign, type JWK } from 'jose';
import { ConflictError } from '../../errors.js';
import { encodeAad } from '../../crypto/aad.js';
import { SYSTEM_CHAIN } from '../audit-events.js';
import type { Core } from '../context.js';
import { randomId } from '../ids.js';

/** The KMS key that wraps the certificate-signing keys' private halves. */
export const CERTIFICATE_KEY = 'system.certificates';
const aadFor = (keyId: string) => encodeAad(['strongroom/certificate-key', keyId]);

/** The published keys, as a JWKS: what a customer verifies a deletion certificate with. */
export async function certificateJwks(core: Core): Promise<{ keys: JWK[] }> {
  const rows = await core.db.reader.selectFrom('certificate_keys').select('public_jwk').orderBy('created_at').execute();
  return { keys: rows.map((row) => JSON.parse(row.public_jwk) as JWK) };
}

async function signingKey(core: Core): Promise<{ keyId: string; privateDer: Buffer }> {
  let row = await core.db.reader.selectFrom('certificate_keys').select(['key_id', 'wrapped_private']).orderBy('created_at', 'desc').executeTakeFirst();
  if (!row) {
    await core.kms.createKey(CERTIFICATE_KEY).catch((error: unknown) => {
      if (!(error instanceof ConflictError)) throw error;
    });
    const keyId = `cert_${randomId(10)}`;
    const pair = generateKeyPairSync('ed25519');
    const privateDer = pair.privateKey.export({ format: 'der', type: 'pkcs8' });
    try {
      const wrapped = await core.kms.wrapKey(CERTIFICATE_KEY, privateDer, aadFor(keyId));
      const jwk = { ...pair.publicKey.export({ format: 'jwk' }), kid: keyId, alg: 'EdDSA', use: 'sig' };
      await core.committer.submit(SYSTEM_CHAIN, (tx) =>
        tx.insertInto('certificate_keys').values({ key_id: keyId, public_jwk: JSON.stringify(jwk), wrapped_private: wrapped, created_at: core.now() }).execute(),
      );
    } finally {
      privateDer.fill(0);
    }
    row = await core.db.reader.selectFrom('certificate_keys').select(['key_id', 'wrapped_private']).orderBy('created_at', 'desc').executeTakeFirstOrThrow();
  }
  return { keyId: row.key_id, privateDer: await core.kms.unwrapKey(CERTIFICATE_KEY, row.wrapped_private, aadFor(row.key_id)) };
}

/** Signs `document` as a compact JWS (EdDSA), verifiable with the published JWKS alone. */
export async function signCertificate(core: Core, document: Record<string, unknown>): Promise<string> {
  const { keyId, privateDer: der } = await signingKey(core);
  try {
    const key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    return await new CompactSign(Buffer.from(JSON.stringify(document), 'utf8')).setProtectedHeader({ alg: 'EdDSA', kid: keyId, typ: 'strongroom-deletion-certificate+jws' }).sign(key);
  } finally {
    der.fill(0);
  }
}
