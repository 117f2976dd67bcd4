// Derives keys with the seed's Node.js deriveKey
// (shared/seeds/column-encryption-node.txt, "Key derivation"), for
// keyprovider's PBKDF2 compatibility tests.
//
// With no arguments it writes the fixed vectors; run from this folder:
//
//	node make_pbkdf2_vectors.mjs > pbkdf2_vectors.json
//
// The inputs are fixed, so every run writes the same file.
//
// With --stdin it reads {"passphrase": "<string>", "salt_hex": "<hex>"} from
// stdin and prints {"key_hex": "<hex>"}: keyprovider's TestPBKDF2LiveNode
// uses it to check a fresh random vector. The passphrase travels on stdin,
// never on the command line.
import { pbkdf2Sync } from 'node:crypto';

const KEY_LENGTH = 32; // 256 bits

// The seed's deriveKey, as the seed wrote it.
export function deriveKey(passphrase, salt) {
  return pbkdf2Sync(passphrase, salt, 600000, KEY_LENGTH, 'sha-512');
}

// Test passphrases and salts. Never use them for real data.
const vectors = [
  { name: 'ascii', passphrase: 'test-passphrase', salt_hex: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f' },
  { name: 'min_salt_16_bytes', passphrase: 'correct horse battery staple', salt_hex: 'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf' },
  { name: 'long_salt_64_bytes', passphrase: 'correct horse battery staple', salt_hex: 'ff'.repeat(64) },
  { name: 'one_character', passphrase: 'x', salt_hex: '5a'.repeat(32) },
  { name: 'latin1_umlauts', passphrase: 'Pässwörd-Grüße', salt_hex: '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0' },
  { name: 'cjk', passphrase: '鍵の合言葉、秘密', salt_hex: '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' },
  { name: 'emoji_astral', passphrase: '🔑 key 🔐 lock 👩‍💻', salt_hex: 'deadbeefcafebabedeadbeefcafebabedeadbeefcafebabedeadbeefcafebabe' },
  // NFC and NFD spell the same text with different bytes: neither Node nor
  // colcrypt normalises, so they derive different keys.
  { name: 'nfc_e_acute', passphrase: 'caf\u00e9', salt_hex: '11'.repeat(32) },
  { name: 'nfd_e_acute', passphrase: 'cafe\u0301', salt_hex: '11'.repeat(32) },
  // Whitespace is part of the passphrase: nothing is trimmed.
  { name: 'trailing_newline', passphrase: 'test-passphrase\n', salt_hex: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f' },
  { name: 'embedded_nul', passphrase: 'before\u0000after', salt_hex: '22'.repeat(32) },
  // Longer than SHA-512's 128-byte block, so HMAC hashes the passphrase first.
  { name: 'longer_than_block', passphrase: 'a fairly long passphrase, '.repeat(8), salt_hex: '33'.repeat(32) },
];

if (process.argv[2] === '--stdin') {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const { passphrase, salt_hex } = JSON.parse(input);
  const key = deriveKey(passphrase, Buffer.from(salt_hex, 'hex'));
  process.stdout.write(JSON.stringify({ key_hex: key.toString('hex') }) + '\n');
} else {
  const out = {
    comment: 'Written by make_pbkdf2_vectors.mjs: pbkdf2Sync(passphrase, salt, 600000, 32, "sha-512") as in the seed. passphrase_hex is the UTF-8 encoding Node.js hashes. Test values only.',
    iterations: 600000,
    digest: 'sha-512',
    key_length: KEY_LENGTH,
    vectors: vectors.map((v) => ({
      name: v.name,
      passphrase: v.passphrase,
      passphrase_hex: Buffer.from(v.passphrase, 'utf-8').toString('hex'),
      salt_hex: v.salt_hex,
      key_hex: deriveKey(v.passphrase, Buffer.from(v.salt_hex, 'hex')).toString('hex'),
    })),
  };
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}
