import assert from 'node:assert/strict';
import { createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync, existsSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  BadRequestError,
  ConfigError,
  ConflictError,
  IntegrityError,
  NotFoundError,
  PreconditionFailedError,
  UnavailableError,
} from '../../src/errors.js';
import type { Kms } from '../../src/kms/kms.js';
import { createMasterKeyFile, openLocalKms, readMasterKey } from '../../src/kms/local.js';

const folders: string[] = [];
after(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

function tempFolder(): string {
  const folder = mkdtempSync(join(tmpdir(), 'strongroom-kms-'));
  folders.push(folder);
  return folder;
}

interface Fixture {
  folder: string;
  keyStoreFile: string;
  masterKey: Buffer;
  open(clock?: () => Date, destroyWaitSeconds?: number): Promise<Kms>;
}

function fixture(): Fixture {
  const folder = tempFolder();
  const keyStoreFile = join(folder, 'keystore.json');
  const masterKey = randomBytes(32);
  return {
    folder,
    keyStoreFile,
    masterKey,
    open: (clock, destroyWaitSeconds) => openLocalKms({ keyStoreFile, masterKey, clock, destroyWaitSeconds }),
  };
}

interface StoreDocument {
  format: number;
  keys: Record<
    string,
    {
      primary: number;
      versions: { version: number; state: string; createdAt: string; material?: string; destroyAt?: string; stateBefore?: string }[];
    }
  >;
}

const readStore = (file: string): StoreDocument => JSON.parse(readFileSync(file, 'utf8')) as StoreDocument;

/** Opens a KEK from the store with the documented format, independently of the provider. */
function openMaterialByHand(masterKey: Buffer, name: string, version: number, material: string): Buffer {
  const sealed = Buffer.from(material, 'base64');
  const decipher = createDecipheriv('aes-256-gcm', masterKey, sealed.subarray(0, 12), { authTagLength: 16 });
  decipher.setAAD(Buffer.from(`strongroom-local-kms|${name}|${version}`));
  decipher.setAuthTag(sealed.subarray(44));
  return Buffer.concat([decipher.update(sealed.subarray(12, 44)), decipher.final()]);
}

const aad = Buffer.from('tenant-a|data-key|1');

describe('local KMS: wrapping', () => {
  it('unwraps what it wrapped, in the documented 0x01 | version | iv | ciphertext | tag format', async () => {
    const kms = await fixture().open();
    await kms.createKey('tenant.a');
    const dataKey = randomBytes(32);
    const wrapped = await kms.wrapKey('tenant.a', dataKey, aad);
    assert.equal(wrapped.length, 1 + 4 + 12 + 32 + 16);
    assert.equal(wrapped[0], 0x01);
    assert.equal(wrapped.readUInt32BE(1), 1);
    assert.equal(wrapped.includes(dataKey), false);
    assert.deepEqual(await kms.unwrapKey('tenant.a', wrapped, aad), dataKey);
    await kms.close();
  });

  it('refuses a wrong aad, any flipped byte after the version, a bad format byte or a short input with one IntegrityError message', async () => {
    const kms = await fixture().open();
    await kms.createKey('tenant.a');
    const wrapped = await kms.wrapKey('tenant.a', randomBytes(32), aad);
    const messages = new Set<string>();
    const expectIntegrity = async (input: Buffer, withAad = aad) =>
      assert.rejects(kms.unwrapKey('tenant.a', input, withAad), (error: unknown) => {
        assert.ok(error instanceof IntegrityError);
        messages.add(error.message);
        return true;
      });
    await expectIntegrity(wrapped, Buffer.from('tenant-b|data-key|1'));
    for (let i = 5; i < wrapped.length; i++) {
      const tampered = Buffer.from(wrapped);
      tampered[i] = (tampered[i] as number) ^ 0x80;
      await expectIntegrity(tampered);
    }
    const otherFormat = Buffer.from(wrapped);
    otherFormat[0] = 0x02;
    await expectIntegrity(otherFormat);
    await expectIntegrity(wrapped.subarray(0, 33));
    assert.equal(messages.size, 1);
    await kms.close();
  });

  it('reports a version the store does not have as NotFoundError', async () => {
    const kms = await fixture().open();
    await kms.createKey('tenant.a');
    const wrapped = await kms.wrapKey('tenant.a', randomBytes(32), aad);
    wrapped.writeUInt32BE(9, 1);
    await assert.rejects(kms.unwrapKey('tenant.a', wrapped, aad), NotFoundError);
    await kms.close();
  });

  it('does not unwrap under another key name', async () => {
    const kms = await fixture().open();
    await kms.createKey('tenant.a');
    await kms.createKey('tenant.b');
    const wrapped = await kms.wrapKey('tenant.a', randomBytes(32), aad);
    await assert.rejects(kms.unwrapKey('tenant.b', wrapped, aad), IntegrityError);
    await kms.close();
  });

  it('wraps with v2 after a rotation while v1 wraps still unwrap', async () => {
    let now = new Date('2026-01-01T00:00:00Z');
    const kms = await fixture().open(() => now);
    await kms.createKey('tenant.a');
    const oldKey = randomBytes(32);
    const oldWrap = await kms.wrapKey('tenant.a', oldKey, aad);
    now = new Date('2026-02-01T00:00:00Z');
    assert.equal(await kms.rotateKey('tenant.a'), 2);
    const newKey = randomBytes(32);
    const newWrap = await kms.wrapKey('tenant.a', newKey, aad);
    assert.equal(newWrap.readUInt32BE(1), 2);
    assert.deepEqual(await kms.unwrapKey('tenant.a', oldWrap, aad), oldKey);
    assert.deepEqual(await kms.unwrapKey('tenant.a', newWrap, aad), newKey);
    assert.deepEqual(await kms.listKeyVersions('tenant.a'), [
      { version: 1, state: 'enabled', primary: false, createdAt: new Date('2026-01-01T00:00:00Z') },
      { version: 2, state: 'enabled', primary: true, createdAt: new Date('2026-02-01T00:00:00Z') },
    ]);
    await kms.close();
  });

  it('refuses invalid key names, a duplicate key, unknown keys and empty keys to wrap', async () => {
    const kms = await fixture().open();
    for (const name of ['', 'Tenant', '-a', 'a b', 'a/b', 'x'.repeat(129), '__proto__']) {
      await assert.rejects(kms.createKey(name), BadRequestError, name);
    }
    await kms.createKey('tenant.a:1_x-y');
    await assert.rejects(kms.createKey('tenant.a:1_x-y'), ConflictError);
    await assert.rejects(kms.wrapKey('missing', randomBytes(32), aad), NotFoundError);
    await assert.rejects(kms.rotateKey('missing'), NotFoundError);
    await assert.rejects(kms.listKeyVersions('missing'), NotFoundError);
    await assert.rejects(kms.wrapKey('tenant.a:1_x-y', Buffer.alloc(0), aad), BadRequestError);
    await kms.close();
  });

  it('refuses every operation after close', async () => {
    const kms = await fixture().open();
    await kms.createKey('tenant.a');
    const wrapped = await kms.wrapKey('tenant.a', randomBytes(32), aad);
    await kms.close();
    await assert.rejects(kms.unwrapKey('tenant.a', wrapped, aad), UnavailableError);
    await assert.rejects(kms.createKey('tenant.b'), UnavailableError);
    assert.equal((await kms.health()).ok, false);
  });
});

describe('local KMS: the key store file', () => {
  it('treats a missing file as an empty store and creates it, mode 0600, on the first write', async () => {
    const f = fixture();
    const kms = await f.open();
    assert.equal(existsSync(f.keyStoreFile), false);
    await kms.createKey('tenant.a');
    assert.equal(statSync(f.keyStoreFile).mode & 0o777, 0o600);
    const store = readStore(f.keyStoreFile);
    assert.equal(store.format, 1);
    assert.equal(store.keys['tenant.a']?.primary, 1);
    assert.equal(store.keys['tenant.a']?.versions[0]?.state, 'enabled');
    // Atomic writes leave no temporary file behind, and the lock is released.
    assert.deepEqual(readdirSync(f.folder), ['keystore.json']);
    await kms.close();
  });

  it('creates a missing folder for the store, mode 0700', async () => {
    const folder = tempFolder();
    const keyStoreFile = join(folder, 'kms', 'keystore.json');
    const kms = await openLocalKms({ keyStoreFile, masterKey: randomBytes(32) });
    await kms.createKey('tenant.a');
    assert.equal(statSync(join(folder, 'kms')).mode & 0o777, 0o700);
    assert.equal((await kms.listKeyVersions('tenant.a')).length, 1);
    await kms.close();
  });

  it('refuses to open a store that group or others can read, saying chmod 600', async () => {
    const f = fixture();
    const kms = await f.open();
    await kms.createKey('tenant.a');
    await kms.close();
    chmodSync(f.keyStoreFile, 0o644);
    await assert.rejects(
      f.open(),
      (error: unknown) =>
        error instanceof ConfigError && error.message.includes(f.keyStoreFile) && error.message.includes('chmod 600'),
    );
  });

  it('holds KEKs only sealed under the master key: neither they, the master key nor wrapped data keys appear in the file', async () => {
    const f = fixture();
    const kms = await f.open();
    await kms.createKey('tenant.a');
    await kms.rotateKey('tenant.a');
    const dataKey = randomBytes(32);
    const wrapped = await kms.wrapKey('tenant.a', dataKey, aad);
    const raw = readFileSync(f.keyStoreFile);
    const text = raw.toString('utf8');
    const forbidden = [dataKey, f.masterKey];
    for (const entry of readStore(f.keyStoreFile).keys['tenant.a']?.versions ?? []) {
      forbidden.push(openMaterialByHand(f.masterKey, 'tenant.a', entry.version, entry.material ?? ''));
    }
    assert.equal(forbidden.length, 4);
    for (const secret of forbidden) {
      assert.equal(raw.includes(secret), false);
      assert.equal(text.includes(secret.toString('base64')), false);
      assert.equal(text.includes(secret.toString('hex')), false);
    }
    // The KEK opened by hand is the one that wrapped the data key (the documented format holds).
    const kek = forbidden[3] as Buffer;
    const decipher = createDecipheriv('aes-256-gcm', kek, wrapped.subarray(5, 17), { authTagLength: 16 });
    decipher.setAAD(aad);
    decipher.setAuthTag(wrapped.subarray(wrapped.length - 16));
    assert.deepEqual(Buffer.concat([decipher.update(wrapped.subarray(17, wrapped.length - 16)), decipher.final()]), dataKey);
    await kms.close();
  });

  it('fails to unwrap once an entry\'s material is tampered, while other keys keep working', async () => {
    const f = fixture();
    const writer = await f.open();
    await writer.createKey('tenant.a');
    await writer.createKey('tenant.b');
    const wrappedA = await writer.wrapKey('tenant.a', randomBytes(32), aad);
    const keyB = randomBytes(32);
    const wrappedB = await writer.wrapKey('tenant.b', keyB, aad);
    await writer.close();

    const store = readStore(f.keyStoreFile);
    const entry = store.keys['tenant.a']?.versions[0];
    assert.ok(entry?.material);
    const material = Buffer.from(entry.material, 'base64');
    material[20] = (material[20] as number) ^ 0x01;
    entry.material = material.toString('base64');
    writeFileSync(f.keyStoreFile, JSON.stringify(store), { mode: 0o600 });

    const reader = await f.open();
    await assert.rejects(reader.unwrapKey('tenant.a', wrappedA, aad), IntegrityError);
    assert.deepEqual(await reader.unwrapKey('tenant.b', wrappedB, aad), keyB);
    await reader.close();
  });

  it('detects entries swapped between key names (the material is bound to name and version)', async () => {
    const f = fixture();
    const writer = await f.open();
    await writer.createKey('tenant.a');
    await writer.createKey('tenant.b');
    const wrappedByB = await writer.wrapKey('tenant.b', randomBytes(32), aad);
    await writer.close();

    // An attacker who can edit the file gives tenant.b the material of tenant.a.
    const store = readStore(f.keyStoreFile);
    const a = store.keys['tenant.a']?.versions[0];
    const b = store.keys['tenant.b']?.versions[0];
    assert.ok(a && b);
    b.material = a.material;
    writeFileSync(f.keyStoreFile, JSON.stringify(store), { mode: 0o600 });

    const reader = await f.open();
    await assert.rejects(reader.unwrapKey('tenant.b', wrappedByB, aad), IntegrityError);
    await reader.close();
  });

  it('refuses to open with a master key that opens none of the store\'s keys', async () => {
    const f = fixture();
    const kms = await f.open();
    await kms.createKey('tenant.a');
    await kms.close();
    await assert.rejects(
      openLocalKms({ keyStoreFile: f.keyStoreFile, masterKey: randomBytes(32) }),
      (error: unknown) => error instanceof ConfigError && /master key/.test(error.message),
    );
    await assert.rejects(openLocalKms({ keyStoreFile: f.keyStoreFile, masterKey: randomBytes(16) }), ConfigError);
  });

  it('refuses a store file that is not a valid store', async () => {
    const f = fixture();
    writeFileSync(f.keyStoreFile, '{"format":2,"keys":{}}', { mode: 0o600 });
    await assert.rejects(f.open(), IntegrityError);
    writeFileSync(f.keyStoreFile, 'not json', { mode: 0o600 });
    await assert.rejects(f.open(), IntegrityError);
  });

  it('reports health: ok with a readable store, not ok once the file is exposed', async () => {
    const f = fixture();
    const kms = await f.open();
    assert.equal((await kms.health()).ok, true);
    await kms.createKey('tenant.a');
    const healthy = await kms.health();
    assert.deepEqual({ ok: healthy.ok, provider: healthy.provider }, { ok: true, provider: 'local' });
    chmodSync(f.keyStoreFile, 0o640);
    const exposed = await kms.health();
    assert.equal(exposed.ok, false);
    assert.match(exposed.detail, /chmod 600/);
    await kms.close();
  });
});

describe('local KMS: disabling and destroying versions in the store file', () => {
  const day = 86_400_000;

  it('a scheduled version records its destruction time and former state; destruction deletes its sealed material from the file', async () => {
    const f = fixture();
    let now = new Date('2026-03-01T00:00:00Z');
    const kms = await f.open(() => now, 3600);
    await kms.createKey('tenant.a');
    await kms.rotateKey('tenant.a');
    await kms.disableKeyVersion('tenant.a', 1);
    const sealed = (readStore(f.keyStoreFile).keys['tenant.a']?.versions ?? []).map((entry) => entry.material);
    assert.equal(sealed.length, 2);

    assert.deepEqual(await kms.scheduleKeyDestruction('tenant.a'), new Date('2026-03-01T01:00:00Z'));
    assert.deepEqual(
      readStore(f.keyStoreFile).keys['tenant.a']?.versions.map(({ state, destroyAt, stateBefore }) => ({ state, destroyAt, stateBefore })),
      [
        { state: 'destroy_scheduled', destroyAt: '2026-03-01T01:00:00.000Z', stateBefore: 'disabled' },
        { state: 'destroy_scheduled', destroyAt: '2026-03-01T01:00:00.000Z', stateBefore: 'enabled' },
      ],
    );

    now = new Date('2026-03-01T01:00:00Z');
    assert.equal(await kms.destroyDueVersions(), 2);
    const text = readFileSync(f.keyStoreFile, 'utf8');
    for (const material of sealed) {
      assert.ok(material !== undefined && !text.includes(material), 'the sealed material is gone from the file');
    }
    assert.deepEqual(readStore(f.keyStoreFile).keys['tenant.a']?.versions.map((entry) => Object.keys(entry).sort()), [
      ['createdAt', 'state', 'version'],
      ['createdAt', 'state', 'version'],
    ]);
    await kms.close();

    // Reopened, the store still says destroyed, and nothing can bring the versions back.
    const reopened = await f.open(() => now);
    assert.deepEqual((await reopened.listKeyVersions('tenant.a')).map((v) => v.state), ['destroyed', 'destroyed']);
    await assert.rejects(reopened.cancelKeyDestruction('tenant.a'), PreconditionFailedError);
    assert.equal((await reopened.health()).ok, true);
    await reopened.close();
  });

  it('a version another instance disables or destroys stops unwrapping in this one at once', async () => {
    const f = fixture();
    let now = new Date('2026-03-01T00:00:00Z');
    const server = await f.open(() => now);
    const cli = await f.open(() => now);
    await server.createKey('tenant.a');
    const dataKey = randomBytes(32);
    const wrapped = await server.wrapKey('tenant.a', dataKey, aad);
    await server.rotateKey('tenant.a');
    assert.deepEqual(await server.unwrapKey('tenant.a', wrapped, aad), dataKey);

    await cli.disableKeyVersion('tenant.a', 1);
    await assert.rejects(server.unwrapKey('tenant.a', wrapped, aad), PreconditionFailedError);
    await cli.enableKeyVersion('tenant.a', 1);
    assert.deepEqual(await server.unwrapKey('tenant.a', wrapped, aad), dataKey);

    await cli.scheduleKeyDestruction('tenant.a');
    now = new Date(now.getTime() + day);
    assert.equal(await cli.destroyDueVersions(), 2);
    await assert.rejects(server.unwrapKey('tenant.a', wrapped, aad), PreconditionFailedError);
    await server.close();
    await cli.close();
  });

  it('two instances destroying due versions at the same time destroy each once', async () => {
    const f = fixture();
    let now = new Date('2026-03-01T00:00:00Z');
    const one = await f.open(() => now);
    const two = await f.open(() => now);
    for (const name of ['tenant.a', 'tenant.b', 'tenant.c']) {
      await one.createKey(name);
      await one.rotateKey(name);
      await one.scheduleKeyDestruction(name);
    }
    now = new Date(now.getTime() + day);
    const counts = await Promise.all([one.destroyDueVersions(), two.destroyDueVersions(), one.destroyDueVersions()]);
    assert.equal(counts.reduce((sum, count) => sum + count, 0), 6, `destroyed ${counts.join(' + ')}`);
    await one.close();
    await two.close();
  });

  it('refuses a store whose destroyed version keeps material, or whose scheduled version lacks its time', async () => {
    const f = fixture();
    const kms = await f.open();
    await kms.createKey('tenant.a');
    await kms.rotateKey('tenant.a');
    await kms.close();
    const good = readStore(f.keyStoreFile);

    const keepsMaterial = structuredClone(good);
    const first = keepsMaterial.keys['tenant.a']?.versions[0];
    assert.ok(first);
    first.state = 'destroyed';
    writeFileSync(f.keyStoreFile, JSON.stringify(keepsMaterial), { mode: 0o600 });
    await assert.rejects(f.open(), IntegrityError);

    const noTime = structuredClone(good);
    const scheduled = noTime.keys['tenant.a']?.versions[0];
    assert.ok(scheduled);
    scheduled.state = 'destroy_scheduled';
    scheduled.stateBefore = 'enabled';
    writeFileSync(f.keyStoreFile, JSON.stringify(noTime), { mode: 0o600 });
    await assert.rejects(f.open(), IntegrityError);
  });

  it('refuses a negative or fractional waiting period', async () => {
    await assert.rejects(fixture().open(undefined, -1), ConfigError);
    await assert.rejects(fixture().open(undefined, 1.5), ConfigError);
  });
});

describe('local KMS: two processes on one store', () => {
  it('a second instance unwraps and wraps with a key the first created after both opened', async () => {
    const f = fixture();
    const server = await f.open();
    const cli = await f.open();
    await cli.createKey('tenant.new');
    const dataKey = randomBytes(32);
    const wrapped = await cli.wrapKey('tenant.new', dataKey, aad);
    assert.deepEqual(await server.unwrapKey('tenant.new', wrapped, aad), dataKey);
    const wrappedByServer = await server.wrapKey('tenant.new', dataKey, aad);
    assert.deepEqual(await cli.unwrapKey('tenant.new', wrappedByServer, aad), dataKey);
    await server.close();
    await cli.close();
  });

  it('a rotation by one instance makes the other wrap with the new primary', async () => {
    const f = fixture();
    const server = await f.open();
    const cli = await f.open();
    await server.createKey('tenant.a');
    assert.equal((await server.wrapKey('tenant.a', randomBytes(32), aad)).readUInt32BE(1), 1);
    await cli.rotateKey('tenant.a');
    assert.equal((await server.wrapKey('tenant.a', randomBytes(32), aad)).readUInt32BE(1), 2);
    await server.close();
    await cli.close();
  });

  it('loses no update when two instances create keys concurrently', async () => {
    const f = fixture();
    const one = await f.open();
    const two = await f.open();
    const names = Array.from({ length: 12 }, (_, i) => `tenant.${i}`);
    await Promise.all(names.map((name, i) => (i % 2 === 0 ? one : two).createKey(name)));
    await one.close();
    await two.close();
    assert.deepEqual(Object.keys(readStore(f.keyStoreFile).keys).sort(), [...names].sort());
    const fresh = await f.open();
    for (const name of names) {
      assert.equal((await fresh.listKeyVersions(name)).length, 1);
    }
    await fresh.close();
  });

  it('loses no update when separate OS processes create keys at the same time', async () => {
    const f = fixture();
    const child = `
      const { openLocalKms } = await import(process.env.MODULE_URL);
      const kms = await openLocalKms({ keyStoreFile: process.env.STORE, masterKey: Buffer.from(process.env.MASTER, 'base64') });
      await Promise.all(process.env.NAMES.split(',').map((name) => kms.createKey(name)));
      await kms.close();`;
    const run = promisify(execFile);
    const namesOf = (prefix: string) => Array.from({ length: 25 }, (_, i) => `${prefix}.${i}`);
    const env = {
      ...process.env,
      MODULE_URL: new URL('../../src/kms/local.js', import.meta.url).href,
      STORE: f.keyStoreFile,
      MASTER: f.masterKey.toString('base64'),
    };
    const here = await f.open();
    await Promise.all([
      run(process.execPath, ['--input-type=module', '-e', child], { env: { ...env, NAMES: namesOf('cli').join(',') } }),
      run(process.execPath, ['--input-type=module', '-e', child], { env: { ...env, NAMES: namesOf('job').join(',') } }),
      ...namesOf('server').map((name) => here.createKey(name)),
    ]);
    await here.close();
    const expected = [...namesOf('cli'), ...namesOf('job'), ...namesOf('server')].sort();
    assert.deepEqual(Object.keys(readStore(f.keyStoreFile).keys).sort(), expected);
  });

  it('waits for a held lock and proceeds once it is released', async () => {
    const f = fixture();
    const kms = await f.open();
    const lock = `${f.keyStoreFile}.lock`;
    writeFileSync(lock, 'another process', { mode: 0o600 });
    let done = false;
    const creating = kms.createKey('tenant.a').then(() => (done = true));
    await sleep(300);
    assert.equal(done, false);
    assert.equal(existsSync(f.keyStoreFile), false);
    unlinkSync(lock);
    await creating;
    assert.ok(readStore(f.keyStoreFile).keys['tenant.a']);
    await kms.close();
  });

  it('removes a lock left over 30 s ago by a crashed process', async () => {
    const f = fixture();
    const kms = await f.open();
    const lock = `${f.keyStoreFile}.lock`;
    writeFileSync(lock, 'crashed process', { mode: 0o600 });
    const longAgo = new Date(Date.now() - 60_000);
    utimesSync(lock, longAgo, longAgo);
    await kms.createKey('tenant.a');
    assert.equal(existsSync(lock), false);
    assert.ok(readStore(f.keyStoreFile).keys['tenant.a']);
    await kms.close();
  });
});

describe('local KMS master key', () => {
  it('createMasterKeyFile writes 32 random bytes, mode 0600, that readMasterKey returns', async () => {
    const file = join(tempFolder(), 'master.key');
    await createMasterKeyFile(file);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const onDisk = readFileSync(file);
    assert.equal(onDisk.length, 32);
    assert.notDeepEqual(onDisk, Buffer.alloc(32));
    assert.deepEqual(await readMasterKey({ file }), onDisk);
  });

  it('createMasterKeyFile never overwrites an existing file', async () => {
    const file = join(tempFolder(), 'master.key');
    await createMasterKeyFile(file);
    const before = readFileSync(file);
    await assert.rejects(createMasterKeyFile(file), ConflictError);
    assert.deepEqual(readFileSync(file), before);
  });

  it('refuses a master key file with mode 0644, naming the file and saying chmod 600', async () => {
    const file = join(tempFolder(), 'master.key');
    await createMasterKeyFile(file);
    chmodSync(file, 0o644);
    await assert.rejects(
      readMasterKey({ file }),
      (error: unknown) => error instanceof ConfigError && error.message.includes(file) && error.message.includes('chmod 600'),
    );
  });

  it('refuses a master key file that is not exactly 32 bytes, or missing', async () => {
    const folder = tempFolder();
    const base64File = join(folder, 'base64.key');
    writeFileSync(base64File, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    await assert.rejects(readMasterKey({ file: base64File }), /exactly 32 raw bytes/);
    await assert.rejects(readMasterKey({ file: join(folder, 'absent.key') }), ConfigError);
  });

  it('reads base64 of 32 bytes from an environment value and never echoes a bad value', async () => {
    const key = randomBytes(32);
    assert.deepEqual(await readMasterKey({ env: `${key.toString('base64')}\n` }), key);
    const tooShort = randomBytes(31).toString('base64');
    await assert.rejects(
      readMasterKey({ env: tooShort }),
      (error: unknown) => error instanceof ConfigError && !error.message.includes(tooShort),
    );
    await assert.rejects(readMasterKey({ env: 'not base64 at all' }), ConfigError);
    await assert.rejects(readMasterKey({}), ConfigError);
  });

  it('prefers the environment value over the file', async () => {
    const key = randomBytes(32);
    assert.deepEqual(await readMasterKey({ env: key.toString('base64'), file: '/nonexistent/master.key' }), key);
  });
});
