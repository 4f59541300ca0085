// Byte-level scans of what a deployment keeps on disk, for the invariant tests that prove no
// plaintext or credential is stored: the SQLite file and its WAL, or a PostgreSQL data directory.
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import pg from 'pg';
import type { Harness } from './strongroom.js';
import { postgresDataDir } from './strongroom.js';

/** Every regular file under `dir`, recursively (symbolic links are not followed). */
/** Files holding file content only: the recovery store's segments, backups and timelines share the blob backends. */
export function fileBlobsUnder(dir: string): string[] {
  return filesUnder(dir).filter((file) => !/(^|\/)(journal|backups|timelines)\//.test(relative(dir, file)));
}

export function filesUnder(dir: string): string[] {
  const files: string[] = [];
  const walk = (current: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(current);
    } catch {
      return; // removed while we walked (PostgreSQL's temporary files come and go)
    }
    for (const name of entries) {
      const path = join(current, name);
      let stat;
      try {
        stat = lstatSync(path);
      } catch {
        continue;
      }
      if (stat.isDirectory()) walk(path);
      else if (stat.isFile()) files.push(path);
    }
  };
  walk(dir);
  return files;
}

/** The SQLite database file and, when they exist, its -wal and -shm files, as they are now. */
export function sqliteFiles(h: Harness): string[] {
  const db = h.config.database.sqlite.file!;
  return [db, `${db}-wal`, `${db}-shm`].filter((file) => existsSync(file));
}

export interface ScanResult {
  /** How many files and bytes were read: a scan that read nothing proves nothing. */
  files: number;
  bytes: number;
  /** For each needle that was found, the files that hold it. */
  found: Map<string, string[]>;
}

/** Looks for each needle, as UTF-8 bytes, in every file. Files that vanish mid-scan are skipped. */
export function scanFiles(files: string[], needles: string[]): ScanResult {
  const patterns = needles.map((needle) => [needle, Buffer.from(needle, 'utf8')] as const);
  const found = new Map<string, string[]>();
  let bytes = 0;
  let read = 0;
  for (const file of files) {
    let content: Buffer;
    try {
      content = readFileSync(file);
    } catch {
      continue;
    }
    read += 1;
    bytes += content.length;
    for (const [needle, pattern] of patterns) {
      if (content.includes(pattern)) found.set(needle, [...(found.get(needle) ?? []), file]);
    }
  }
  return { files: read, bytes, found };
}

/**
 * Everything the harness's database keeps on disk. PostgreSQL: a CHECKPOINT first, so every dirty
 * page is written to the data files (the WAL already holds every change), then every file of the
 * cluster. SQLite: the database file and its WAL as they are, without forcing a checkpoint.
 */
export async function databaseFiles(h: Harness): Promise<string[]> {
  if (h.driver === 'sqlite') return sqliteFiles(h);
  const client = new pg.Client({ connectionString: h.config.database.postgres.url! });
  await client.connect();
  try {
    await client.query('CHECKPOINT');
  } finally {
    await client.end();
  }
  return filesUnder(await postgresDataDir());
}

/** A unique, greppable, lower-case string (so e-mail normalisation keeps it as is) that every id format accepts. */
export function marker(label: string): string {
  return `mrk-${label.toLowerCase()}-${randomBytes(8).toString('hex')}`;
}

/** Readable summary of needles that were found, for assertion messages. */
export function describeFound(found: Map<string, string[]>): string {
  return [...found].map(([needle, files]) => `${needle} in ${files.join(', ')}`).join('; ');
}
