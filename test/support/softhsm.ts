// A throwaway SoftHSM2 token for tests: a softhsm2.conf and token folder in a fresh temporary
// folder, SOFTHSM2_CONF pointing at it for this process (and the children it starts), and one token
// initialized with a random PIN.
//
//   const token = await createSoftHsmToken();
//   after(() => token.remove());
//   const kms = await openPkcs11Kms({ library: token.library, tokenLabel: token.tokenLabel, pin: token.pin });
//
// SoftHSM2 reads SOFTHSM2_CONF when the module is initialized, so make the token before the first
// provider opens, and one token per test process. `bash scripts/test-deps.sh` installs softhsm2.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export interface SoftHsmToken {
  /** The PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  library: string;
  tokenLabel: string;
  /** The user PIN: random, so a test can prove it never shows up anywhere. */
  pin: string;
  /** The temporary folder holding softhsm2.conf and the tokens. */
  folder: string;
  /** Moves the token's folder away: to the module, the token is gone (an outage). */
  unplug(): Promise<void>;
  /** Puts it back. */
  plugIn(): Promise<void>;
  /** Deletes the folder. Safe to call twice. */
  remove(): Promise<void>;
}

/** Where Debian (and other distributions) put the module; the first that exists is used. */
const LIBRARY_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
  '/usr/lib64/pkcs11/libsofthsm2.so',
];

export function softHsmLibrary(): string {
  const library = LIBRARY_CANDIDATES.find((candidate) => existsSync(candidate));
  if (library === undefined) {
    throw new Error('libsofthsm2.so not found: run `bash scripts/test-deps.sh` (installs the softhsm2 package)');
  }
  return library;
}

export async function createSoftHsmToken(opts: { label?: string } = {}): Promise<SoftHsmToken> {
  const library = softHsmLibrary();
  const folder = await mkdtemp(join(tmpdir(), 'strongroom-softhsm-'));
  const tokens = join(folder, 'tokens');
  const unplugged = join(folder, 'unplugged');
  await mkdir(tokens, { mode: 0o700 });
  const conf = join(folder, 'softhsm2.conf');
  await writeFile(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`, { mode: 0o600 });
  process.env.SOFTHSM2_CONF = conf;

  const tokenLabel = opts.label ?? `strongroom-${randomBytes(4).toString('hex')}`;
  const pin = `pin-${randomBytes(12).toString('hex')}`;
  const soPin = `so-${randomBytes(12).toString('hex')}`;
  try {
    await promisify(execFile)('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--pin', pin, '--so-pin', soPin], {
      env: { ...process.env, SOFTHSM2_CONF: conf },
    });
  } catch (error) {
    await rm(folder, { recursive: true, force: true });
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(missing ? 'softhsm2-util not found: run `bash scripts/test-deps.sh`' : `softhsm2-util failed: ${String(error)}`);
  }
  const [tokenFolder] = await readdir(tokens);
  if (tokenFolder === undefined) {
    throw new Error(`softhsm2-util made no token in ${tokens}`);
  }
  return {
    library,
    tokenLabel,
    pin,
    folder,
    unplug: () => rename(join(tokens, tokenFolder), unplugged),
    plugIn: () => rename(unplugged, join(tokens, tokenFolder)),
    async remove() {
      await rm(folder, { recursive: true, force: true });
    },
  };
}
