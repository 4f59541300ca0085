import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Database } from '../../store/db/open.js';

/** Runs `use` with an empty SQLite database in a private temporary folder, removed afterwards. */
export async function withScratchDatabase<T>(use: (db: Database) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'strongroom-scratch-'));
  try {
    const db = await openDatabase({ driver: 'sqlite', file: join(dir, 'scratch.db') });
    try {
      return await use(db);
    } finally {
      await db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
