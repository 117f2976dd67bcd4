// The seed's column-encryption code (shared/seeds/column-encryption-node.txt,
// "The encryption utility" and "Key management and rotation"), as plain
// JavaScript. It is the reference colcrypt's wire format must match: keep it
// as the seed wrote it.
import { randomBytes, createCipheriv, createDecipheriv, pbkdf2Sync } from 'node:crypto';

const ALGORITHM = 'aes-256-gcm';
const KEY_LENGTH = 32; // 256 bits
const NONCE_LENGTH = 12; // 96 bits
const TAG_LENGTH = 16; // 128 bits

export function encrypt(plaintext, keyVersion, key) {
  const nonce = randomBytes(NONCE_LENGTH);
  const cipher = createCipheriv(ALGORITHM, key, nonce);
  const encrypted = Buffer.concat([cipher.update(plaintext, 'utf-8'), cipher.final()]);
  const tag = cipher.getAuthTag();
  // Format: v<version>:<nonce+ciphertext+tag as base64url>
  const raw = Buffer.concat([nonce, encrypted, tag]);
  return `v${keyVersion}:${raw.toString('base64url')}`;
}

// decrypt is the seed's decrypt(payload, key), applied to the part after the
// version prefix, which names the key to use.
export function decrypt(payload, key) {
  const raw = Buffer.from(payload, 'base64url');
  const nonce = raw.subarray(0, NONCE_LENGTH);
  const tag = raw.subarray(raw.length - TAG_LENGTH);
  const ciphertext = raw.subarray(NONCE_LENGTH, raw.length - TAG_LENGTH);
  const decipher = createDecipheriv(ALGORITHM, key, nonce);
  decipher.setAuthTag(tag);
  return decipher.update(ciphertext, undefined, 'utf-8') + decipher.final('utf-8');
}

// decryptVersioned splits "v<version>:<payload>" and decrypts with the key
// of that version, as the seed's rotation section describes.
export function decryptVersioned(value, keysByVersion) {
  const m = /^v(\d+):(.*)$/s.exec(value);
  if (!m) throw new Error('not a versioned value');
  const key = keysByVersion[m[1]];
  if (!key) throw new Error('unknown key version');
  return decrypt(m[2], key);
}

export function deriveKey(passphrase, salt) {
  return pbkdf2Sync(passphrase, salt, 600000, KEY_LENGTH, 'sha-512');
}
