import { NotFoundError, PreconditionFailedError } from '../errors.js';
import type { KeyVersionInfo } from './kms.js';

/*
 * The life of a key's versions, for the providers that keep their own records (local, pkcs11):
 *   enabled ⇄ disabled                  never the primary
 *   enabled | disabled → destroy_scheduled   every version at once, remembering its state before
 *   destroy_scheduled → its state before     cancelling, only before `destroyAt`
 *   destroy_scheduled → destroyed            once due; the provider deletes the material
 * Only enabled versions wrap or unwrap. These functions change records in place; the caller stores them.
 */

type VersionState = KeyVersionInfo['state'];

export interface VersionRecord {
  version: number;
  state: VersionState;
  createdAt: string;
  /** While destroy_scheduled: when the material may be destroyed. */
  destroyAt?: string;
  /** While destroy_scheduled: what cancelling restores. */
  stateBefore?: 'enabled' | 'disabled';
}

export interface KeyRecord<V extends VersionRecord> {
  primary: number;
  versions: V[];
}

const MAX_VERSION = 0xffffffff;
const STATES: readonly VersionState[] = ['enabled', 'disabled', 'destroy_scheduled', 'destroyed'];
const STATE_TEXT: Record<VersionState, string> = {
  enabled: 'enabled',
  disabled: 'disabled',
  destroy_scheduled: 'scheduled for destruction',
  destroyed: 'destroyed',
};

export function findVersion<V extends VersionRecord>(key: KeyRecord<V>, keyName: string, version: number): V {
  const found = key.versions.find((entry) => entry.version === version);
  if (found === undefined) {
    throw new NotFoundError(`KMS key ${keyName} version ${version} not found`);
  }
  return found;
}

/** Throws PreconditionFailedError unless the version may wrap and unwrap. */
export function assertUsable(keyName: string, version: VersionRecord): void {
  if (version.state !== 'enabled') {
    throw new PreconditionFailedError(`KMS key ${keyName} version ${version.version} is ${STATE_TEXT[version.state]}`);
  }
}

/** The number a rotation gives the new primary; refused once the key is scheduled for destruction or destroyed. */
export function nextVersion(key: KeyRecord<VersionRecord>, keyName: string): number {
  const primary = findVersion(key, keyName, key.primary);
  if (primary.state === 'destroy_scheduled' || primary.state === 'destroyed') {
    throw new PreconditionFailedError(`KMS key ${keyName} is ${STATE_TEXT[primary.state]}`);
  }
  const next = Math.max(...key.versions.map((entry) => entry.version)) + 1;
  if (next > MAX_VERSION) {
    throw new PreconditionFailedError(`KMS key ${keyName} has no version number left`);
  }
  return next;
}

/** Enables or disables one version; returns whether anything changed. */
export function setVersionEnabled(key: KeyRecord<VersionRecord>, keyName: string, version: number, enabled: boolean): boolean {
  const entry = findVersion(key, keyName, version);
  if (entry.state === 'destroy_scheduled') {
    throw new PreconditionFailedError(
      `KMS key ${keyName} version ${version} is scheduled for destruction; cancel the destruction first`,
    );
  }
  if (entry.state === 'destroyed') {
    throw new PreconditionFailedError(`KMS key ${keyName} version ${version} is destroyed`);
  }
  if (!enabled && version === key.primary) {
    throw new PreconditionFailedError(`KMS key ${keyName} version ${version} is the primary; rotate the key before disabling it`);
  }
  const state = enabled ? 'enabled' : 'disabled';
  if (entry.state === state) {
    return false;
  }
  entry.state = state;
  return true;
}

/**
 * Schedules every version for destruction at `destroyAt` and returns that time. A key already
 * scheduled keeps its first date, so a purge resumed after a crash does not push it back.
 */
export function scheduleDestruction(key: KeyRecord<VersionRecord>, keyName: string, destroyAt: Date): Date {
  const already = scheduledTimes(key);
  if (already.length > 0) {
    return new Date(Math.min(...already));
  }
  if (key.versions.every((entry) => entry.state === 'destroyed')) {
    throw new PreconditionFailedError(`KMS key ${keyName} is destroyed`);
  }
  for (const entry of key.versions) {
    if (entry.state === 'enabled' || entry.state === 'disabled') {
      entry.stateBefore = entry.state;
      entry.state = 'destroy_scheduled';
      entry.destroyAt = destroyAt.toISOString();
    }
  }
  return destroyAt;
}

/** Restores every scheduled version to its state before; refused once the waiting period has ended. */
export function cancelDestruction(key: KeyRecord<VersionRecord>, keyName: string, now: Date): void {
  const times = scheduledTimes(key);
  if (times.length === 0) {
    const destroyed = key.versions.every((entry) => entry.state === 'destroyed');
    throw new PreconditionFailedError(`KMS key ${keyName} is ${destroyed ? 'destroyed' : 'not scheduled for destruction'}`);
  }
  const due = Math.min(...times);
  if (due <= now.getTime()) {
    throw new PreconditionFailedError(
      `the waiting period of KMS key ${keyName} ended at ${new Date(due).toISOString()}; it can no longer be restored`,
    );
  }
  for (const entry of key.versions) {
    if (entry.state === 'destroy_scheduled') {
      entry.state = entry.stateBefore ?? 'disabled';
      delete entry.stateBefore;
      delete entry.destroyAt;
    }
  }
}

export function dueVersions<V extends VersionRecord>(key: KeyRecord<V>, now: Date): V[] {
  return key.versions.filter(
    (entry) => entry.state === 'destroy_scheduled' && Date.parse(entry.destroyAt ?? '') <= now.getTime(),
  );
}

/** Records that the version's material is gone; the caller deletes the material itself. */
export function markDestroyed(entry: VersionRecord): void {
  entry.state = 'destroyed';
  delete entry.stateBefore;
  delete entry.destroyAt;
}

export function describeVersions(key: KeyRecord<VersionRecord>): KeyVersionInfo[] {
  return key.versions.map((entry) => ({
    version: entry.version,
    state: entry.state,
    primary: entry.version === key.primary,
    createdAt: new Date(entry.createdAt),
  }));
}

/** Validates one stored version entry (a record read from a file or a token); undefined if invalid. */
export function parseVersionRecord(item: unknown): VersionRecord | undefined {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) {
    return undefined;
  }
  const { version, state, createdAt, destroyAt, stateBefore } = item as Record<string, unknown>;
  if (
    !isVersionNumber(version) ||
    !STATES.includes(state as VersionState) ||
    !isTime(createdAt)
  ) {
    return undefined;
  }
  const record: VersionRecord = { version, state: state as VersionState, createdAt };
  if (state === 'destroy_scheduled') {
    if (!isTime(destroyAt) || (stateBefore !== 'enabled' && stateBefore !== 'disabled')) {
      return undefined;
    }
    record.destroyAt = destroyAt;
    record.stateBefore = stateBefore;
  } else if (destroyAt !== undefined || stateBefore !== undefined) {
    return undefined;
  }
  return record;
}

export function isVersionNumber(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= MAX_VERSION;
}

function isTime(value: unknown): value is string {
  return typeof value === 'string' && !Number.isNaN(Date.parse(value));
}

function scheduledTimes(key: KeyRecord<VersionRecord>): number[] {
  return key.versions
    .filter((entry) => entry.state === 'destroy_scheduled')
    .map((entry) => Date.parse(entry.destroyAt ?? ''));
}
