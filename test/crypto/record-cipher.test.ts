import assert from 'node:assert/strict';
import { createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { IntegrityError, StrongroomError } from '../../src/errors.js';
import { encodeAad, openRecord, recordKeyId, sealRecord, type DataKey } from '../../src/crypto/record-cipher.js';

const HEADER = 53;
const TAG = 16;

function newDataKey(id = 7): DataKey {
  return { id, key: randomBytes(32) };
}

const aadFor = (version: number) => encodeAad(['tenant-a', 'contacts', 'rec-1', version]);

describe('sealRecord / openRecord', () => {
  it('opens what it sealed, with the same key and aad', () => {
    const key = newDataKey();
    const body = Buffer.from('{"name":"Ada Lovelace"}');
    const sealed = sealRecord(key, aadFor(1), body);
    assert.deepEqual(openRecord(key, aadFor(1), sealed), body);
  });

  it('round-trips an empty body and a 1 MiB body', () => {
    const key = newDataKey();
    for (const body of [Buffer.alloc(0), randomBytes(1024 * 1024)]) {
      assert.deepEqual(openRecord(key, aadFor(1), sealRecord(key, aadFor(1), body)), body);
    }
  });

  it('lays out 0x01 | key id | salt | commitment | ciphertext | tag, and the body is not in the clear', () => {
    const key = newDataKey(0xdeadbeef);
    const body = Buffer.from('customer secret customer secret');
    const sealed = sealRecord(key, aadFor(1), body);
    assert.equal(sealed.length, HEADER + body.length + TAG);
    assert.equal(sealed[0], 0x01);
    assert.equal(sealed.readUInt32BE(1), 0xdeadbeef);
    assert.equal(recordKeyId(sealed), 0xdeadbeef);
    assert.equal(sealed.includes(body), false);
  });

  it('follows the documented construction: HKDF(key, salt, "strongroom/record/v1") and GCM aad = header ‖ aad', () => {
    const key = newDataKey();
    const body = Buffer.from('checked by an independent reader');
    const aad = aadFor(3);
    const sealed = sealRecord(key, aad, body);
    const salt = sealed.subarray(5, 21);
    const derived = Buffer.from(hkdfSync('sha256', key.key, salt, 'strongroom/record/v1', 76));
    assert.deepEqual(sealed.subarray(21, HEADER), derived.subarray(32, 64));
    const decipher = createDecipheriv('aes-256-gcm', derived.subarray(0, 32), derived.subarray(64), { authTagLength: 16 });
    decipher.setAAD(Buffer.concat([sealed.subarray(0, HEADER), aad]));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
    const opened = Buffer.concat([decipher.update(sealed.subarray(HEADER, sealed.length - TAG)), decipher.final()]);
    assert.deepEqual(opened, body);
  });

  it('never repeats a salt (so never a message key or IV) across many seals of the same body', () => {
    const key = newDataKey();
    const salts = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      salts.add(sealRecord(key, aadFor(1), Buffer.from('same')).subarray(5, 21).toString('hex'));
    }
    assert.equal(salts.size, 5000);
  });

  it('refuses another record\'s aad (a moved or replayed ciphertext) with IntegrityError', () => {
    const key = newDataKey();
    const sealed = sealRecord(key, aadFor(1), Buffer.from('v1 body'));
    assert.throws(() => openRecord(key, aadFor(2), sealed), IntegrityError);
    assert.throws(
      () => openRecord(key, encodeAad(['tenant-b', 'contacts', 'rec-1', 1]), sealed),
      IntegrityError,
    );
  });

  it('refuses a ciphertext with any single byte flipped, header included, with one message whatever the byte', () => {
    const key = newDataKey();
    const sealed = sealRecord(key, aadFor(1), Buffer.from('twenty bytes of body'));
    const messages = new Set<string>();
    for (let i = 0; i < sealed.length; i++) {
      const tampered = Buffer.from(sealed);
      tampered[i] = (tampered[i] as number) ^ 0x01;
      assert.throws(
        () => openRecord(key, aadFor(1), tampered),
        (error: unknown) => {
          assert.ok(error instanceof IntegrityError, `byte ${i}`);
          messages.add(error.message);
          return true;
        },
      );
    }
    assert.equal(messages.size, 1);
  });

  it('refuses a truncated ciphertext, an unknown format byte and a wrong key with IntegrityError', () => {
    const key = newDataKey();
    const sealed = sealRecord(key, aadFor(1), Buffer.from('body'));
    assert.throws(() => openRecord(key, aadFor(1), sealed.subarray(0, HEADER + TAG - 1)), IntegrityError);
    assert.throws(() => openRecord(key, aadFor(1), Buffer.alloc(0)), IntegrityError);
    const otherFormat = Buffer.from(sealed);
    otherFormat[0] = 0x02;
    assert.throws(() => openRecord(key, aadFor(1), otherFormat), IntegrityError);
    assert.throws(() => openRecord({ id: key.id, key: randomBytes(32) }, aadFor(1), sealed), IntegrityError);
    assert.throws(() => openRecord({ id: key.id + 1, key: key.key }, aadFor(1), sealed), IntegrityError);
    assert.throws(() => recordKeyId(Buffer.from([0x01, 0, 0])), IntegrityError);
  });

  it('refuses an all-zero (wiped) data key for sealing and opening', () => {
    const key = newDataKey();
    const sealed = sealRecord(key, aadFor(1), Buffer.from('body'));
    key.key.fill(0);
    assert.throws(() => sealRecord(key, aadFor(1), Buffer.from('body')), StrongroomError);
    assert.throws(() => openRecord(key, aadFor(1), sealed), StrongroomError);
  });

  it('refuses a data key that is not 32 bytes or whose id is not a u32', () => {
    assert.throws(() => sealRecord({ id: 1, key: randomBytes(16) }, aadFor(1), Buffer.from('x')), StrongroomError);
    assert.throws(() => sealRecord({ id: -1, key: randomBytes(32) }, aadFor(1), Buffer.from('x')), StrongroomError);
    assert.throws(() => sealRecord({ id: 2 ** 32, key: randomBytes(32) }, aadFor(1), Buffer.from('x')), StrongroomError);
  });
});

describe('encodeAad', () => {
  it('length-prefixes every part so different splits never encode alike', () => {
    assert.notDeepEqual(encodeAad(['ab', 'c']), encodeAad(['a', 'bc']));
    assert.notDeepEqual(encodeAad(['a', '']), encodeAad(['a']));
    assert.notDeepEqual(encodeAad(['tenant|x', 'y']), encodeAad(['tenant', 'x|y']));
  });

  it('encodes strings as u32 BE length + UTF-8 and numbers as 8-byte u64 BE', () => {
    assert.deepEqual(encodeAad(['é', 258]), Buffer.from('00000002c3a9' + '00000008' + '0000000000000102', 'hex'));
    assert.deepEqual(encodeAad([Buffer.from([1, 2, 3])]), Buffer.from('00000003010203', 'hex'));
    assert.deepEqual(encodeAad([]), Buffer.alloc(0));
  });

  it('refuses negative, fractional and unsafe numbers, and lone surrogates', () => {
    assert.throws(() => encodeAad([-1]), /non-negative safe integers/);
    assert.throws(() => encodeAad([1.5]), /non-negative safe integers/);
    assert.throws(() => encodeAad([2 ** 53]), /non-negative safe integers/);
    assert.throws(() => encodeAad(['a\uD800']), /surrogate/);
    assert.doesNotThrow(() => encodeAad(['emoji \u{1F600}']));
  });
});
