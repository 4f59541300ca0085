import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Replaces `file` with `content` so that a reader (or a crash) sees the old file or the new one,
 * never a half-written key: write a temporary file beside it, fsync, rename, fsync the folder.
 */
export async function writeFileAtomic(file: string, content: string | Buffer, mode: number): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    // 'wx': never follow or reuse something already at the temporary name.
    const handle = await fs.open(tmp, 'wx', mode);
    try {
      await handle.chmod(mode); // exact mode whatever the umask
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  const folder = await fs.open(path.dirname(file), 'r');
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}
