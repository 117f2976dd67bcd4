// Writes node_vectors.json: values encrypted by the seed's Node.js code, for
// encryptedtype's interop tests. Run from this folder:
//
//	node make_vectors.mjs > node_vectors.json
//
// The nonces are random, so every run gives new (equally valid) vectors.
import { encrypt } from './seed.mjs';

// Fixed test keys (hex). Never use these for real data.
const keys = {
  1: Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex'),
  2: Buffer.from('a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf', 'hex'),
  4294967295: Buffer.from('f0e1d2c3b4a5968778695a4b3c2d1e0f0f1e2d3c4b5a69788796a5b4c3d2e1f0', 'hex'),
};

const plaintexts = {
  empty: '',
  api_key: 'sk_live_abc123def456',
  email: 'Alice.Example@example.com',
  unicode: 'Grüße, 世界! 🔐',
  one_block: '0123456789abcdef',
  long: 'x'.repeat(1000),
};

const good = [];
for (const [version, key] of Object.entries(keys)) {
  for (const [name, plaintext] of Object.entries(plaintexts)) {
    good.push({ name: `good_v${version}_${name}`, version: Number(version), plaintext, value: encrypt(plaintext, version, key) });
  }
}

// Failing values, made from a good one the way an attacker or a bug would.
const base = encrypt('sk_live_abc123def456', 1, keys[1]);
const payload = base.slice(3);
const raw = Buffer.from(payload, 'base64url');
const flip = (i) => { const b = Buffer.from(raw); b[i] ^= 0x01; return 'v1:' + b.toString('base64url'); };
const other = Buffer.alloc(32, 7);
// base is authentic: list it with the good vectors, so that a check which
// accepts only good vectors (the fuzz test) knows it.
good.push({ name: 'good_fail_base', version: 1, plaintext: 'sk_live_abc123def456', value: base });
const fail = [
  { name: 'fail_flipped_nonce', value: flip(0), error: 'auth' },
  { name: 'fail_flipped_ciphertext', value: flip(14), error: 'auth' },
  { name: 'fail_flipped_tag', value: flip(raw.length - 1), error: 'auth' },
  { name: 'fail_truncated_payload', value: 'v1:' + raw.subarray(0, raw.length - 10).toString('base64url'), error: 'auth' },
  // The seed's own truncation test cuts the string: depending on where the
  // cut falls that is bad base64 or a failed tag, and either must be refused.
  { name: 'fail_truncated_string', value: base.slice(0, -10), error: 'auth_or_malformed' },
  { name: 'fail_other_key', value: encrypt('secret', 1, other), error: 'auth' },
  { name: 'fail_version_swapped', value: 'v2:' + payload, error: 'auth' },
  { name: 'fail_unknown_version', value: 'v3:' + payload, error: 'unknown_version' },
  { name: 'fail_too_short', value: 'v1:' + raw.subarray(0, 27).toString('base64url'), error: 'malformed' },
  { name: 'fail_leading_zero', value: 'v01:' + payload, error: 'malformed' },
  { name: 'fail_version_zero', value: 'v0:' + payload, error: 'malformed' },
  { name: 'fail_version_overflow', value: 'v4294967296:' + payload, error: 'malformed' },
  { name: 'fail_padded', value: 'v1:' + payload + '=', error: 'malformed' },
  { name: 'fail_std_alphabet', value: 'v1:' + payload.replaceAll('-', '+').replaceAll('_', '/') + '+/', error: 'malformed' },
  { name: 'fail_line_break', value: 'v1:' + payload.slice(0, 8) + '\n' + payload.slice(8), error: 'malformed' },
  { name: 'fail_no_version', value: payload, error: 'not_encrypted' },
  { name: 'fail_plaintext', value: 'alice@example.com', error: 'not_encrypted' },
  { name: 'fail_empty', value: '', error: 'not_encrypted' },
  { name: 'fail_uppercase_prefix', value: 'V1:' + payload, error: 'not_encrypted' },
];

const hexKeys = Object.fromEntries(Object.entries(keys).map(([v, k]) => [v, k.toString('hex')]));
process.stdout.write(JSON.stringify({ keys: hexKeys, good, fail }, null, 1) + '\n');
