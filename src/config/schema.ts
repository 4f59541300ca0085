import { Type, type Static, type TSchema } from '@sinclair/typebox';

/** Marks a configuration value as secret: `config print` masks it and it is never logged. */
const Secret = <T extends TSchema>(schema: T) => ({ ...schema, secret: true }) as T;

const Obj = <T extends Parameters<typeof Type.Object>[0]>(props: T) =>
  Type.Object(props, { additionalProperties: false, default: {} });

const Port = Type.Integer({ minimum: 0, maximum: 65535 });
const Path = Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null });

/** `amr` values (RFC 8176) that count as a second factor, unless configured otherwise. */
export const DEFAULT_MFA_AMR_VALUES = ['mfa', 'otp', 'hwk', 'swk', 'sms', 'totp', 'fido', 'webauthn'];

const OperatorRole = Type.Union([Type.Literal('sre'), Type.Literal('security'), Type.Literal('support')]);

/** One blob backend: a local folder (default: under the data directory) or a bucket through the S3 API. */
const BlobBackend = () =>
  Obj({
    kind: Type.Union([Type.Literal('fs'), Type.Literal('s3')], { default: 'fs' }),
    /** For `fs`: the folder; default `<dataDir>/blobs/primary` or `…/replica`. */
    path: Path,
    s3: Obj({
      bucket: Type.Union([Type.String({ pattern: '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$' }), Type.Null()], { default: null }),
      region: Type.String({ minLength: 1, default: 'us-east-1' }),
      /** null: AWS; else e.g. `https://storage.googleapis.com` (GCS), a MinIO or R2 URL. */
      endpoint: Type.Union([Type.String({ pattern: '^https?://' }), Type.Null()], { default: null }),
      forcePathStyle: Type.Boolean({ default: false }),
      /** Prepended to every object key, e.g. `strongroom/`. */
      prefix: Type.String({ pattern: '^([a-z0-9][a-z0-9_-]*/)*$', default: '' }),
      /** null: the SDK's default credential chain (instance role, environment). */
      accessKeyId: Secret(Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null })),
      secretAccessKey: Secret(Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null })),
    }),
  });

export const ConfigSchema = Obj({
  /** `production` refuses settings meant only for development, such as the Firebase Auth emulator. */
  mode: Type.Union([Type.Literal('development'), Type.Literal('production')], { default: 'development' }),
  /** Where the embedded default keeps its database, key store and certificates. */
  dataDir: Type.String({ minLength: 1, default: '.strongroom' }),
  server: Obj({
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8443 }),
    /** The name clients use; it goes in the local certificate and in redirects. */
    publicHost: Type.String({ pattern: '^[A-Za-z0-9.-]{1,253}$', default: 'localhost' }),
    /** Optional plain-HTTP listener that only answers 308 to the HTTPS URL. */
    httpPort: Type.Union([Port, Type.Null()], { default: null }),
    tls: Obj({ certFile: Path, keyFile: Path }),
    bodyLimitBytes: Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024, default: 1024 * 1024 }),
    trustProxy: Type.Boolean({ default: false }),
  }),
  database: Obj({
    driver: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')], { default: 'sqlite' }),
    sqlite: Obj({ file: Path }),
    postgres: Obj({
      url: Secret(Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null })),
      sslMode: Type.Union([Type.Literal('disable'), Type.Literal('verify-full')], { default: 'verify-full' }),
      caFile: Path,
      poolSize: Type.Integer({ minimum: 1, maximum: 200, default: 10 }),
    }),
    /** Most operations folded into one transaction and one fsync. */
    groupCommitMaxBatch: Type.Integer({ minimum: 1, maximum: 10000, default: 512 }),
  }),
  kms: Obj({
    provider: Type.Union([Type.Literal('local'), Type.Literal('pkcs11'), Type.Literal('gcp')], { default: 'local' }),
    /** How long a key scheduled for destruction can still be restored (the tenant purge's last chance). */
    destroyWaitSeconds: Type.Integer({ minimum: 0, maximum: 90 * 86400, default: 86400 }),
    pkcs11: Obj({
      /** The PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
      library: Path,
      tokenLabel: Type.Union([Type.String({ minLength: 1, maxLength: 32 }), Type.Null()], { default: null }),
      /** The user PIN; better given through STRONGROOM_KMS__PKCS11__PIN than in a file. */
      pin: Secret(Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null })),
      /** Sessions opened on the token for concurrent calls. */
      sessions: Type.Integer({ minimum: 1, maximum: 256, default: 8 }),
    }),
    gcp: Obj({
      /** projects/P/locations/L/keyRings/R: tenant and system keys are created in this key ring. */
      keyRing: Type.Union([Type.String({ pattern: '^projects/[^/]+/locations/[^/]+/keyRings/[^/]+$' }), Type.Null()], { default: null }),
      /** Service-account credentials (JSON) file; unset: Application Default Credentials. */
      credentialsFile: Path,
      /** Another API endpoint (host[:port]), for a private endpoint or a test server. */
      apiEndpoint: Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null }),
    }),
    local: Obj({
      keyStoreFile: Path,
      masterKeyFile: Path,
      /** Name of the environment variable that may hold the master key (base64), instead of the file. */
      masterKeyEnv: Type.String({ minLength: 1, default: 'STRONGROOM_KMS_MASTER_KEY' }),
    }),
  }),
  auth: Obj({
    firebase: Obj({
      /** Firebase ID tokens are accepted when this is set: their `aud`, and `iss` = securetoken.google.com/<id>. */
      projectId: Type.Union([Type.String({ pattern: '^[a-z0-9-]{4,30}$' }), Type.Null()], { default: null }),
      certsUrl: Type.String({
        pattern: '^https://',
        default: 'https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com',
      }),
      /** host:port of the Firebase Auth emulator: unsigned tokens are then accepted. Never in production. */
      emulatorHost: Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null }),
      /** Refuse tokens of users disabled, deleted or signed out everywhere since the token was issued. */
      checkRevoked: Type.Boolean({ default: false }),
      /** A service-account key (JSON) allowed to look users up; needed for checkRevoked outside the emulator. */
      serviceAccountFile: Path,
      identityToolkitUrl: Type.String({ pattern: '^https://', default: 'https://identitytoolkit.googleapis.com' }),
    }),
    oidc: Obj({
      issuers: Type.Array(
        Type.Object(
          {
            issuer: Type.String({ pattern: '^https://' }),
            audiences: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
            algorithms: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
            mfaAmrValues: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
          },
          { additionalProperties: false },
        ),
        { default: [] },
      ),
    }),
    /** Extra CA certificates (PEM) trusted when fetching issuers' keys, for identity providers on a private CA. */
    caFile: Path,
    clockSkewSeconds: Type.Integer({ minimum: 0, maximum: 300, default: 30 }),
    /** Failed authentications allowed per source address, and per claimed credential, in each window. */
    failureLimit: Obj({
      maxFailures: Type.Integer({ minimum: 1, maximum: 10_000, default: 10 }),
      windowSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 60 }),
    }),
  }),
  /**
   * The deployment's staff, a realm apart from tenants' members. Each entry names a trusted issuer and
   * either one subject or a verified e-mail domain, with its roles. Operators must sign in with MFA.
   */
  operators: Obj({
    identities: Type.Array(
      Type.Object(
        {
          issuer: Type.String({ pattern: '^https://' }),
          subject: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
          emailDomain: Type.Optional(Type.String({ pattern: '^[a-z0-9.-]{1,253}$' })),
          roles: Type.Array(OperatorRole, { minItems: 1, uniqueItems: true }),
        },
        { additionalProperties: false },
      ),
      { default: [] },
    ),
    /** Which claims prove a second factor for operators: OIDC `amr` values, Firebase `sign_in_second_factor` values. */
    mfaClaims: Obj({
      amr: Type.Array(Type.String({ minLength: 1 }), { default: DEFAULT_MFA_AMR_VALUES }),
      firebaseSecondFactors: Type.Array(Type.String({ minLength: 1 }), { default: ['phone', 'totp'] }),
    }),
  }),
  secrets: Obj({
    /** System secrets, sealed under the KMS (`strongroom secrets set NAME`); values elsewhere refer to them as `secret:NAME`. */
    file: Path,
  }),
  keys: Obj({
    /** KEKs whose primary version is older are rotated (and their data keys re-wrapped) in the background; 0: never. */
    kekRotationDays: Type.Integer({ minimum: 0, maximum: 3650, default: 90 }),
    dataKeyCacheSeconds: Type.Integer({ minimum: 1, maximum: 86400, default: 300 }),
    dataKeyCacheEntries: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000 }),
    /** Tenants whose current data key is older get a new one, and their rows are re-encrypted in the background; 0: never. */
    dataKeyRotationDays: Type.Integer({ minimum: 0, maximum: 3650, default: 365 }),
    /** Re-encryption works in transactions of this many rows, pausing between them. */
    reencryptBatchRows: Type.Integer({ minimum: 1, maximum: 10_000, default: 500 }),
    reencryptPauseMs: Type.Integer({ minimum: 0, maximum: 60_000, default: 50 }),
  }),
  files: Obj({
    /** Largest upload, in bytes (413 above it). */
    maxBytes: Type.Integer({ minimum: 1024, maximum: 5 * 1024 ** 4, default: 5 * 1024 ** 3 }),
    /** Non-current versions and deleted files (and non-current record versions) are kept this long, then removed. */
    retentionDays: Type.Integer({ minimum: 1, maximum: 3650, default: 30 }),
    /** The longest lifetime the API gives a signed download URL. */
    signedUrlMaxSeconds: Type.Integer({ minimum: 1, maximum: 300, default: 300 }),
  }),
  /** Where file ciphertext is kept: every object on a primary and a replica. */
  blobs: Obj({
    primary: BlobBackend(),
    replica: BlobBackend(),
    /** `all`: an upload succeeds only once both copies are stored (503 otherwise); `primary`: a missed replica copy is queued for repair. */
    writePolicy: Type.Union([Type.Literal('all'), Type.Literal('primary')], { default: 'all' }),
    /** How often every stored object is read back on both sides and its checksum verified; 0: never. */
    scrubIntervalHours: Type.Integer({ minimum: 0, maximum: 24 * 365, default: 24 }),
  }),
  records: Obj({
    maxRecordBytes: Type.Integer({ minimum: 1024, maximum: 16 * 1024 * 1024, default: 256 * 1024 }),
    maxIndexedFields: Type.Integer({ minimum: 0, maximum: 32, default: 8 }),
    defaultPageSize: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
    maxPageSize: Type.Integer({ minimum: 1, maximum: 1000, default: 500 }),
  }),
  /** Outbound connections (webhooks, SMTP) go only where these allow: the defence against server-side request forgery. */
  egress: Obj({
    /** Host names outbound requests may reach (`example.com`, or `*.example.com` for its subdomains); empty: any host whose addresses are public. */
    allowedHosts: Type.Array(Type.String({ pattern: '^(\\*\\.)?[a-z0-9.-]{1,253}$' }), { default: [] }),
    /** Address ranges (CIDR) allowed although private, loopback or link-local, e.g. an internal relay; metadata addresses stay refused unless listed exactly. */
    allowedNetworks: Type.Array(Type.String({ minLength: 3, maxLength: 64 }), { default: [] }),
    timeoutMs: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000 }),
    maxResponseBytes: Type.Integer({ minimum: 0, maximum: 10 * 1024 * 1024, default: 64 * 1024 }),
    /** Extra CA certificates (PEM) trusted for outbound HTTPS, for receivers on a private CA. */
    caFile: Path,
  }),
  /** The SMTP server notifications are sent through; TLS (STARTTLS or implicit) is required and verified. */
  smtp: Obj({
    host: Type.Union([Type.String({ pattern: '^[A-Za-z0-9.-]{1,253}$' }), Type.Null()], { default: null }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 587 }),
    /** `starttls`: upgrade on port 587 (refused if the server does not offer it); `tls`: implicit TLS, port 465. */
    security: Type.Union([Type.Literal('starttls'), Type.Literal('tls')], { default: 'starttls' }),
    username: Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null }),
    password: Secret(Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null })),
    from: Type.Union([Type.String({ pattern: '^[^@\\s]+@[^@\\s]+$' }), Type.Null()], { default: null }),
    /** Extra CA certificates (PEM) for a server on a private CA. */
    caFile: Path,
  }),
  notifications: Obj({
    /** Attempts before a notification becomes a dead letter (operators can retry it). */
    maxAttempts: Type.Integer({ minimum: 1, maximum: 100, default: 10 }),
    /** Backoff: base × 2^attempt, capped, with full jitter. */
    baseDelaySeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 30 }),
    maxDelaySeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 3600 }),
    /** The console or API URL e-mails link back to. */
    linkUrl: Type.Union([Type.String({ pattern: '^https://' }), Type.Null()], { default: null }),
    /** Who hears of operator-level events (break-glass use, purges). */
    operatorEmails: Type.Array(Type.String({ pattern: '^[^@\\s]+@[^@\\s]+$' }), { default: [] }),
  }),
  /** A tenant's end: termination makes it read-only, and its data is purged this long after. */
  lifecycle: Obj({
    /** Days from termination to purge; never shorter than the export window. */
    purgeAfterDays: Type.Integer({ minimum: 1, maximum: 3650, default: 60 }),
    /** Days a terminated tenant can still export its data, as the deployment promises its customers. */
    exportWindowDays: Type.Integer({ minimum: 0, maximum: 3650, default: 30 }),
    /** Days a built export archive stays downloadable before its blob is deleted. */
    exportRetentionDays: Type.Integer({ minimum: 1, maximum: 365, default: 7 }),
  }),
  /** Point-in-time recovery: the change log shipped to the blob store, daily backups, restore drills. */
  recovery: Obj({
    /** How often new change-log entries are shipped; with the write of a segment, this bounds the RPO. */
    shipIntervalMs: Type.Integer({ minimum: 50, maximum: 1000, default: 250 }),
    /** A segment is cut at this size even within one interval. */
    segmentMaxBytes: Type.Integer({ minimum: 64 * 1024, maximum: 64 * 1024 * 1024, default: 4 * 1024 * 1024 }),
    /** Shipped segments are kept this long: the point-in-time window. */
    segmentRetentionDays: Type.Integer({ minimum: 1, maximum: 365, default: 7 }),
    /** How often a full backup is taken. */
    backupIntervalHours: Type.Integer({ minimum: 1, maximum: 24 * 7, default: 24 }),
    /** Backups are kept this long (never the newest one, nor one that segments still depend on). */
    backupRetentionDays: Type.Integer({ minimum: 1, maximum: 3650, default: 30 }),
    /** How often the whole database is restored into a scratch database and compared with the live one; 0: never. */
    drillFullHours: Type.Integer({ minimum: 0, maximum: 24 * 30, default: 24 }),
    /** How often one random tenant is restored and compared; 0: never. */
    drillTenantHours: Type.Integer({ minimum: 0, maximum: 24 * 30, default: 1 }),
  }),
  log: Obj({
    level: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info' },
    ),
  }),
});

export type Config = Static<typeof ConfigSchema>;
