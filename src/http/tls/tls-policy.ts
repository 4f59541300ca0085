import { constants } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';

/**
 * TLS settings shared by every HTTPS listener (the first start and each certificate reload).
 *
 * TLS 1.2 is limited to forward-secret AEAD suites: no CBC (padding-oracle attacks such as Lucky13),
 * no static-RSA key exchange (no forward secrecy, ROBOT), no DHE (weak-group and Raccoon issues).
 * TLS 1.3 keeps OpenSSL's default suites (all AEAD): a cipher string without `TLS_` names leaves them.
 */
const TLS12_SUITES = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
];

export const tlsPolicy = Object.freeze({
  minVersion: 'TLSv1.2',
  ciphers: TLS12_SUITES.join(':'),
  honorCipherOrder: true,
  ecdhCurve: 'X25519:prime256v1:secp384r1',
  // Client-initiated TLS 1.2 renegotiation is a CPU-exhaustion lever and nothing here needs it.
  secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
} satisfies SecureContextOptions);

export interface CertificatePem {
  /** PEM certificate, optionally followed by its intermediate certificates. */
  cert: string | Buffer;
  key: string | Buffer;
}

/**
 * Options for `https.createServer`, `tls.createSecureContext` or `server.setSecureContext`: the
 * policy above with the given certificate and key.
 *
 * @example https.createServer(secureContextOptions({ cert, key }), handler)
 */
export function secureContextOptions(pem: CertificatePem): SecureContextOptions {
  return { ...tlsPolicy, cert: pem.cert, key: pem.key };
}
