import { PreconditionFailedError, StrongroomError } from '../errors.js';
import type { CryptoKey, GcpCalls } from './gcp-calls.js';
import { cryptoKeyPath, parseVersionsLabel, stateName, timestampDate, versionPath, versionsLabel } from './gcp-resources.js';

/*
 * Scheduled destruction on Cloud KMS, which destroys each version itself when its time comes.
 *
 * Cloud KMS restores a version scheduled for destruction as DISABLED. To restore versions "as they
 * were", scheduling records on the CryptoKey the versions that were already disabled, in the label
 * `strongroom_disabled_before` (`2_5`), and marks the key `strongroom_destroy=scheduled`; cancelling
 * enables the others again and removes both labels. The labels live in Cloud KMS, so a cancel works
 * from any process, days later. Every step can be repeated after a crash part-way.
 */

const LABEL_DESTROY = 'strongroom_destroy';
const LABEL_DESTROY_SCHEDULED = 'scheduled';
const LABEL_DISABLED_BEFORE = 'strongroom_disabled_before';

export async function scheduleKeyDestruction(calls: GcpCalls, keyName: string): Promise<Date> {
  const keyPath = cryptoKeyPath(calls.keyRing, keyName);
  const { key, versions } = await calls.readKey(keyName, keyPath);
  const live = versions.filter((entry) => ['ENABLED', 'DISABLED'].includes(stateName(entry.state)));
  const scheduled = versions.filter((entry) => stateName(entry.state) === 'DESTROY_SCHEDULED');
  if (live.length === 0 && scheduled.length === 0) {
    throw new PreconditionFailedError(`KMS key ${keyName} has no version left to destroy`);
  }
  if (live.length > 0) {
    // A retry after a partial run keeps what the first run recorded about versions it already scheduled.
    const disabledBefore = scheduled.length > 0 ? parseVersionsLabel(key.labels?.[LABEL_DISABLED_BEFORE]) : new Set<number>();
    for (const entry of live) {
      if (stateName(entry.state) === 'DISABLED') {
        disabledBefore.add(calls.versionOf(keyPath, entry));
      }
    }
    const recorded = versionsLabel([...disabledBefore]);
    if (recorded === null) {
      throw new PreconditionFailedError(`KMS key ${keyName} has too many disabled versions to record before destruction`);
    }
    await calls.setLabels(`KMS key ${keyName}`, keyPath, withOurLabels(key, { [LABEL_DESTROY]: LABEL_DESTROY_SCHEDULED, [LABEL_DISABLED_BEFORE]: recorded }));
  }
  const destroyTimes = scheduled.map((entry) => timestampDate(entry.destroyTime));
  for (const entry of live) {
    const version = calls.versionOf(keyPath, entry);
    const [destroyed] = await calls.call('DestroyCryptoKeyVersion', `KMS key ${keyName} version ${version}`, (options) =>
      calls.client.destroyCryptoKeyVersion({ name: entry.name }, options),
    );
    destroyTimes.push(timestampDate(destroyed.destroyTime));
  }
  return latest(keyName, destroyTimes);
}

export async function cancelKeyDestruction(calls: GcpCalls, keyName: string): Promise<void> {
  const keyPath = cryptoKeyPath(calls.keyRing, keyName);
  const { key, versions } = await calls.readKey(keyName, keyPath);
  const marked = key.labels?.[LABEL_DESTROY] === LABEL_DESTROY_SCHEDULED;
  const scheduled = versions.filter((entry) => stateName(entry.state) === 'DESTROY_SCHEDULED');
  if (versions.every((entry) => stateName(entry.state) === 'DESTROYED')) {
    throw new PreconditionFailedError(`KMS key ${keyName} is destroyed: too late to cancel`);
  }
  if (scheduled.length === 0 && !marked) {
    throw new PreconditionFailedError(`KMS key ${keyName} is not scheduled for destruction`);
  }
  const restored = new Set<number>();
  for (const entry of scheduled) {
    const version = calls.versionOf(keyPath, entry);
    await calls.call('RestoreCryptoKeyVersion', `KMS key ${keyName} version ${version}`, (options) =>
      calls.client.restoreCryptoKeyVersion({ name: entry.name }, options),
    );
    restored.add(version);
  }
  // Restored versions come back DISABLED. With our labels we also finish a cancel that stopped half-way.
  const disabledBefore = parseVersionsLabel(key.labels?.[LABEL_DISABLED_BEFORE]);
  for (const entry of versions) {
    const version = calls.versionOf(keyPath, entry);
    const nowDisabled = restored.has(version) || (marked && stateName(entry.state) === 'DISABLED');
    if (nowDisabled && !disabledBefore.has(version)) {
      await calls.setVersionState(keyName, versionPath(keyPath, version), version, 'ENABLED');
    }
  }
  if (marked) {
    await calls.setLabels(`KMS key ${keyName}`, keyPath, withOurLabels(key, {}));
  }
}

/**
 * Reports, once per key, the versions of keys we scheduled whose destruction Cloud KMS has completed,
 * and clears the key's mark. One filtered list of the key ring, then only the marked keys are read.
 */
export async function reportDestroyedVersions(calls: GcpCalls): Promise<number> {
  const [keys] = await calls.call('ListCryptoKeys', `key ring ${calls.keyRing}`, (options) =>
    calls.client.listCryptoKeys({ parent: calls.keyRing, filter: `labels.${LABEL_DESTROY}=${LABEL_DESTROY_SCHEDULED}` }, options),
  );
  let destroyed = 0;
  for (const key of keys) {
    const keyPath = String(key.name);
    const subject = `CryptoKey ${keyPath}`;
    const [versions] = await calls.call('ListCryptoKeyVersions', subject, (options) =>
      calls.client.listCryptoKeyVersions({ parent: keyPath }, options),
    );
    if (versions.length > 0 && versions.every((entry) => stateName(entry.state) === 'DESTROYED')) {
      await calls.setLabels(subject, keyPath, withOurLabels(key, {}));
      destroyed += versions.length;
    }
  }
  return destroyed;
}

/** The key's labels with ours replaced by `ours`; anyone else's stay. */
function withOurLabels(key: CryptoKey, ours: Record<string, string>): Record<string, string> {
  const labels: Record<string, string> = { ...key.labels };
  delete labels[LABEL_DESTROY];
  delete labels[LABEL_DISABLED_BEFORE];
  return { ...labels, ...ours };
}

function latest(keyName: string, dates: (Date | null)[]): Date {
  const times = dates.map((date) => date?.getTime() ?? Number.NaN);
  if (times.length === 0 || times.some(Number.isNaN)) {
    throw new StrongroomError('internal', `GCP KMS gave no destroy time for a version of KMS key ${keyName}`);
  }
  return new Date(Math.max(...times));
}
