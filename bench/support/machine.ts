import { createCipheriv, randomBytes } from 'node:crypto';
import { closeSync, fdatasyncSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

/* Yardsticks of the machine the benchmark runs on, so figures from different machines compare. */

/** Cores, CPU model, memory, OS and Node version, on one line. */
export function machineLine(): string {
  const cpus = os.cpus();
  return `${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${os.type()} ${os.release()}, node ${process.version}`;
}

/**
 * AES-256-GCM encryptions of 1 KiB per second on one core: a yardstick for this machine's speed
 * (DESIGN.md measured ~195k/s on the machine the targets come from).
 */
export function aesGcmRate(): number {
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const plaintext = Buffer.alloc(1024);
  let count = 0;
  const start = performance.now();
  while (performance.now() - start < 500) {
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.update(plaintext);
    cipher.final();
    cipher.getAuthTag();
    count += 1;
  }
  return (count * 1000) / (performance.now() - start);
}

/** CPU seconds the whole machine has spent busy (all cores), from /proc/stat; null elsewhere. */
export function machineBusySeconds(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    // cpu  user nice system idle iowait irq softirq steal …: everything but idle and iowait is busy.
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / 100;
  } catch {
    return null;
  }
}

/** fdatasync of a 4 KiB write in the data dir, per second: the floor under every durable commit. */
export function fsyncRate(dir: string): number {
  const file = join(dir, 'fsync-probe');
  const fd = openSync(file, 'w', 0o600);
  const page = Buffer.alloc(4096);
  let count = 0;
  const start = performance.now();
  try {
    while (performance.now() - start < 1000) {
      writeSync(fd, page, 0, page.length, 0);
      fdatasyncSync(fd);
      count += 1;
    }
  } finally {
    closeSync(fd);
    rmSync(file);
  }
  return (count * 1000) / (performance.now() - start);
}

export interface Observed<T> {
  value: T;
  seconds: number;
  /** CPU other processes used meanwhile, in cores (1: one core busy all along); null without /proc. */
  othersCores: number | null;
}

/**
 * Runs `work`, timing it and noting how busy the rest of the machine was meanwhile: every process
 * but this one and those `oursCpuSeconds` counts (a server child's CPU seconds so far).
 */
export async function observed<T>(work: () => Promise<T>, oursCpuSeconds: () => number | null = () => 0): Promise<Observed<T>> {
  const machineBefore = machineBusySeconds();
  const oursBefore = oursCpuSeconds();
  const selfBefore = process.cpuUsage();
  const started = performance.now();
  const value = await work();
  const seconds = (performance.now() - started) / 1000;
  const self = process.cpuUsage(selfBefore);
  const oursAfter = oursCpuSeconds();
  const machineAfter = machineBusySeconds();
  if (machineBefore === null || machineAfter === null || oursBefore === null || oursAfter === null) return { value, seconds, othersCores: null };
  const others = machineAfter - machineBefore - (oursAfter - oursBefore) - (self.user + self.system) / 1e6;
  return { value, seconds, othersCores: Math.max(0, others) / seconds };
}
