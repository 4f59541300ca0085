import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ConfigError, IntegrityError, NotFoundError } from '../../src/errors.js';
import type { Kms } from '../../src/kms/kms.js';
import { openLocalKms } from '../../src/kms/local.js';
import { openSecretStore, type SecretStore } from '../../src/secrets/store.js';

let dir: string;
let kms: Kms;
let store: SecretStore;
let file: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strongroom-secret-store-'));
  kms = await openLocalKms({ keyStoreFile: join(dir, 'kms', 'keystore.json'), masterKey: randomBytes(32) });
  file = join(dir, 'secrets.json');
  store = openSecretStore({ file, kms });
});
after(async () => {
  await kms.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a secret reads back as set; an update keeps its creation date; unknown names are NotFound', async () => {
  await store.set('s3-secret', Buffer.from('first'));
  const [created] = await store.list();
  await store.set('s3-secret', Buffer.from('second'));
  assert.equal((await store.get('s3-secret')).toString(), 'second');
  const [updated] = await store.list();
  assert.equal(updated!.createdAt, created!.createdAt);
  await assert.rejects(store.get('nope'), NotFoundError);
});

test('entries swapped between names, or a flipped byte, fail to open: each is bound to its name', async () => {
  await store.set('alpha', Buffer.from('alpha value'));
  await store.set('beta', Buffer.from('beta value'));
  const original = readFileSync(file, 'utf8');
  const parsed = JSON.parse(original);
  [parsed.secrets.alpha, parsed.secrets.beta] = [parsed.secrets.beta, parsed.secrets.alpha];
  writeFileSync(file, JSON.stringify(parsed), { mode: 0o600 });
  await assert.rejects(store.get('alpha'), IntegrityError);
  const flipped = JSON.parse(original);
  const value = Buffer.from(flipped.secrets.beta.value, 'base64');
  value[value.length - 1]! ^= 1;
  flipped.secrets.beta.value = value.toString('base64');
  writeFileSync(file, JSON.stringify(flipped), { mode: 0o600 });
  await assert.rejects(store.get('beta'), IntegrityError);
  writeFileSync(file, original, { mode: 0o600 });
  assert.equal((await store.get('beta')).toString(), 'beta value');
});

test('a secrets file that others can read is refused, saying chmod 600', async () => {
  chmodSync(file, 0o644);
  try {
    await assert.rejects(store.get('alpha'), (e: unknown) => e instanceof ConfigError && /chmod 600/.test(e.message));
  } finally {
    chmodSync(file, 0o600);
  }
});
