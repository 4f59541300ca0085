import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pkcs11js from 'pkcs11js';
import type { PKCS11, Template } from 'pkcs11js';
import { IntegrityError, UnavailableError } from '../errors.js';
import { KEY_NAME } from './key-name.js';
import { isObjectGone } from './pkcs11-module.js';
import type { SessionPool } from './pkcs11-sessions.js';
import { isVersionNumber, parseVersionRecord, type KeyRecord, type VersionRecord } from './version-lifecycle.js';

/*
 * What the pkcs11 provider keeps on the token, all private objects (seen only after login):
 * - each key version: an AES-256 secret key, CKA_LABEL `<keyName>#v<version>`, generated inside the
 *   token, sensitive and never extractable;
 * - each key's record (primary, versions, states, destruction times): a CKO_DATA object, CKA_APPLICATION
 *   `strongroom-kms`, CKA_LABEL `<keyName>`, CKA_VALUE JSON `{ format: 1, seq, primary, versions }`.
 *   Tokens may refuse to change a data object's value, so a change writes the record with seq + 1 and
 *   then destroys the older one; readers take the highest seq, so a crash between the two is harmless;
 * - while a key's record is being changed: a lock, a CKO_DATA object `strongroom-kms-lock` / `<keyName>`.
 * Every process on the token reads these on each call, so they all agree.
 */

type Handle = Buffer;

export interface TokenKeyRecord extends KeyRecord<VersionRecord> {
  seq: number;
}

const RECORD_APPLICATION = 'strongroom-kms';
const LOCK_APPLICATION = 'strongroom-kms-lock';
const LOCK_WAIT_MS = 5_000;
/** A lock older than this was left by a crashed process: a record change takes well under a second. */
const LOCK_STALE_MS = 30_000;
const FIND_BATCH = 100;
const RECORD_READ_ATTEMPTS = 5;

const recordTemplate = (keyName?: string): Template => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
  { type: pkcs11js.CKA_TOKEN, value: true },
  { type: pkcs11js.CKA_APPLICATION, value: RECORD_APPLICATION },
  ...(keyName === undefined ? [] : [{ type: pkcs11js.CKA_LABEL, value: keyName }]),
];

function findObjects(pkcs11: PKCS11, session: Handle, template: Template): Handle[] {
  pkcs11.C_FindObjectsInit(session, template);
  try {
    const found: Handle[] = [];
    for (;;) {
      const batch = pkcs11.C_FindObjects(session, FIND_BATCH);
      found.push(...batch);
      if (batch.length < FIND_BATCH) {
        return found;
      }
    }
  } finally {
    pkcs11.C_FindObjectsFinal(session);
  }
}

/** The key's current record and every record object (older ones a crash left behind included). */
export function readKeyRecord(
  pkcs11: PKCS11,
  session: Handle,
  keyName: string,
): { record: TokenKeyRecord; objects: Handle[] } | undefined {
  for (let attempt = 1; ; attempt++) {
    try {
      return readRecordObjects(pkcs11, session, keyName, findObjects(pkcs11, session, recordTemplate(keyName)));
    } catch (error) {
      // A writer replaced the record between our search and our read: search again.
      if (!isObjectGone(error) || attempt === RECORD_READ_ATTEMPTS) {
        throw error;
      }
    }
  }
}

function readRecordObjects(
  pkcs11: PKCS11,
  session: Handle,
  keyName: string,
  objects: Handle[],
): { record: TokenKeyRecord; objects: Handle[] } | undefined {
  let record: TokenKeyRecord | undefined;
  for (const object of objects) {
    const candidate = parseRecord(keyName, readValue(pkcs11, session, object));
    if (record !== undefined && candidate.seq === record.seq) {
      throw new IntegrityError(`the token holds two records of KMS key ${keyName} with the same sequence number`);
    }
    if (record === undefined || candidate.seq > record.seq) {
      record = candidate;
    }
  }
  return record === undefined ? undefined : { record, objects };
}

/** Every key's current record, in one search (a search per key would cost each time as much as this one). */
export function readAllKeyRecords(pkcs11: PKCS11, session: Handle): Map<string, TokenKeyRecord> {
  const records = new Map<string, TokenKeyRecord>();
  for (const object of findObjects(pkcs11, session, recordTemplate())) {
    let label: Buffer | undefined;
    let value: Buffer | undefined;
    try {
      [label, value] = pkcs11
        .C_GetAttributeValue(session, object, [{ type: pkcs11js.CKA_LABEL }, { type: pkcs11js.CKA_VALUE }])
        .map((attribute) => attribute.value);
    } catch (error) {
      // Replaced since the search by a newer record, which the search may have found too.
      if (isObjectGone(error)) {
        continue;
      }
      throw error;
    }
    const name = label?.toString('utf8') ?? '';
    if (!KEY_NAME.test(name)) {
      continue;
    }
    const record = parseRecord(name, value ?? Buffer.alloc(0));
    const known = records.get(name);
    if (known === undefined || record.seq > known.seq) {
      records.set(name, record);
    }
  }
  return records;
}

/** Stores `record` as the next version of the key's record, then removes the objects it replaces. */
export function writeKeyRecord(pkcs11: PKCS11, session: Handle, keyName: string, record: TokenKeyRecord, replaced: Handle[]): void {
  const { seq, primary, versions } = record;
  const value = Buffer.from(JSON.stringify({ format: 1, seq: seq + 1, primary, versions }), 'utf8');
  pkcs11.C_CreateObject(session, [
    ...recordTemplate(keyName),
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_VALUE, value },
  ]);
  record.seq = seq + 1;
  for (const object of replaced) {
    pkcs11.C_DestroyObject(session, object);
  }
}

const versionLabel = (keyName: string, version: number): string => `${keyName}#v${version}`;

export function findVersionKeys(pkcs11: PKCS11, session: Handle, keyName: string, version: number): Handle[] {
  return findObjects(pkcs11, session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_LABEL, value: versionLabel(keyName, version) },
  ]);
}

/**
 * Generates a key version inside the token. A key object of that label can only be left over from a
 * creation that crashed before its record was written, so nothing was ever wrapped with it: it goes.
 */
export function generateVersionKey(pkcs11: PKCS11, session: Handle, keyName: string, version: number): void {
  for (const orphan of findVersionKeys(pkcs11, session, keyName, version)) {
    pkcs11.C_DestroyObject(session, orphan);
  }
  // Synchronous on purpose: SoftHSM2 fails (CKR_GENERAL_ERROR) now and then when a token object is
  // generated on a worker thread while the main thread searches. Creating keys is rare; only
  // encryption and decryption, the frequent calls, run on the thread pool.
  pkcs11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    { type: pkcs11js.CKA_LABEL, value: versionLabel(keyName, version) },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    // The KEK never leaves the token, not even wrapped under another key.
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    // Data keys arrive as bytes, so encrypt/decrypt wraps them; without CKA_WRAP the KEK cannot export other token keys.
    { type: pkcs11js.CKA_ENCRYPT, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: true },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_SIGN, value: false },
    { type: pkcs11js.CKA_VERIFY, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
    // No later C_SetAttributeValue or C_CopyObject can relabel it, duplicate it or widen what it may do.
    { type: pkcs11js.CKA_MODIFIABLE, value: false },
    { type: pkcs11js.CKA_COPYABLE, value: false },
  ]);
}

/**
 * Runs `critical` holding the token-wide lock on `keyName`, so that processes sharing the token (on
 * one machine or several) never interleave their changes to its record. PKCS#11 has no atomic
 * test-and-set: each contender creates its own lock object and holds the lock only if it then finds
 * no other; otherwise it removes its own and tries again after a random pause.
 */
export async function withKeyLock<T>(pool: SessionPool, keyName: string, critical: () => Promise<T>): Promise<T> {
  const owner = randomUUID();
  const deadline = Date.now() + LOCK_WAIT_MS;
  let held: Handle | undefined;
  while (held === undefined) {
    held = await pool.use('locking a key', (session) => tryLock(pool.pkcs11, session, keyName, owner));
    if (held === undefined) {
      if (Date.now() >= deadline) {
        throw new UnavailableError(`KMS key ${keyName} is still locked on the token after ${LOCK_WAIT_MS / 1000} s; retry later`);
      }
      await sleep(10 + Math.floor(Math.random() * 40));
    }
  }
  const lock = held;
  try {
    return await critical();
  } finally {
    // If the token is gone the lock goes stale and the next contender removes it.
    await pool.use('unlocking a key', (session) => pool.pkcs11.C_DestroyObject(session, lock)).catch(() => undefined);
  }
}

function tryLock(pkcs11: PKCS11, session: Handle, keyName: string, owner: string): Handle | undefined {
  const lockTemplate: Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_APPLICATION, value: LOCK_APPLICATION },
    { type: pkcs11js.CKA_LABEL, value: keyName },
  ];
  const mine = pkcs11.C_CreateObject(session, [
    ...lockTemplate,
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_VALUE, value: Buffer.from(JSON.stringify({ owner, at: Date.now() })) },
  ]);
  const others = findObjects(pkcs11, session, lockTemplate).filter((object) => !object.equals(mine));
  if (others.length === 0) {
    return mine;
  }
  pkcs11.C_DestroyObject(session, mine);
  for (const other of others) {
    if (lockAge(readValue(pkcs11, session, other)) > LOCK_STALE_MS) {
      pkcs11.C_DestroyObject(session, other);
    }
  }
  return undefined;
}

function lockAge(value: Buffer): number {
  try {
    const { at } = JSON.parse(value.toString('utf8')) as { at?: unknown };
    return typeof at === 'number' ? Date.now() - at : Number.POSITIVE_INFINITY;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

function readValue(pkcs11: PKCS11, session: Handle, object: Handle): Buffer {
  const [attribute] = pkcs11.C_GetAttributeValue(session, object, [{ type: pkcs11js.CKA_VALUE }]);
  return attribute?.value ?? Buffer.alloc(0);
}

function parseRecord(keyName: string, value: Buffer): TokenKeyRecord {
  const malformed = new IntegrityError(`the token's record of KMS key ${keyName} is not valid`);
  let document: unknown;
  try {
    document = JSON.parse(value.toString('utf8'));
  } catch {
    throw malformed;
  }
  const { format, seq, primary, versions } = (document ?? {}) as Record<string, unknown>;
  if (format !== 1 || !Number.isSafeInteger(seq) || !isVersionNumber(primary) || !Array.isArray(versions)) {
    throw malformed;
  }
  const parsed: VersionRecord[] = [];
  for (const item of versions as unknown[]) {
    const version = parseVersionRecord(item);
    if (version === undefined || parsed.some((known) => known.version === version.version)) {
      throw malformed;
    }
    parsed.push(version);
  }
  if (!parsed.some((known) => known.version === primary)) {
    throw malformed;
  }
  return { seq: seq as number, primary, versions: parsed };
}
