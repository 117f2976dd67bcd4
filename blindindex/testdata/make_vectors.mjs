// Writes vectors.json: blind-index test vectors computed independently of the
// Go code, with Node.js's own crypto (node:crypto hkdfSync and createHmac)
// and, for the slow mode, the Argon2id of the hash-wasm package. The Go test
// TestVectors (vectors_test.go) checks that package blindindex produces
// exactly these values, so the construction cannot drift.
//
// Run from this folder (Node.js 18 or later):
//
//	npm install --no-save hash-wasm@4    # only needed for the slow-mode vectors
//	node make_vectors.mjs > vectors.json
//	rm -rf node_modules package-lock.json
//
// The output is deterministic: running it again must not change vectors.json.
//
// The construction, as documented in package blindindex:
//
//	info  = "colcrypt/blindindex/v1|hmac-sha256|bits=<bits>|name=<name>"
//	K_col = HKDF-SHA256(root key, salt = empty, info, 32 bytes)
//	mac   = HMAC-SHA256(K_col, normalise(input))
//	value = "b" + version + ":" + base64url(truncate(mac, bits))
//
// and in the slow mode
//
//	info  = "colcrypt/blindindex/v1|argon2id|t=<t>|m=<m>|p=<p>|bits=<bits>|name=<name>"
//	mac   = Argon2id(password = normalise(input), salt = K_col, t, m, p, 32 bytes)
//	value = "a" + version + ":" + base64url(truncate(mac, bits))
//
// where truncate keeps ceil(bits/8) bytes and zeroes the unused low-order
// bits of the last one.
import { hkdfSync, createHmac } from 'node:crypto';

let argon2id = null;
try {
  ({ argon2id } = await import('hash-wasm'));
} catch {
  console.error('hash-wasm is not installed: run `npm install --no-save hash-wasm@4` first (the slow-mode vectors need it)');
  process.exit(1);
}

// Fixed test root keys (hex). Never use these for real data.
const keys = {
  1: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f',
  2: 'a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf',
  4294967295: 'f0e1d2c3b4a5968778695a4b3c2d1e0f0f1e2d3c4b5a69788796a5b4c3d2e1f0',
};

// Normalisers, by the names the Go test maps to blindindex.TrimSpace, NFKC,
// Fold and DigitsOnly. JavaScript has no Unicode full case folding:
// toLowerCase agrees with it on the inputs below except where a case gives
// its normalised form by hand (`normalized`), taken from CaseFolding.txt.
const normalisers = {
  trim: (s) => s.trim(),
  nfkc: (s) => s.normalize('NFKC'),
  fold: (s) => s.toLowerCase(),
  digits: (s) => s.replace(/[^0-9]/g, ''),
};

const email = ['trim', 'nfkc', 'fold'];
const cases = [
  { name: 'good_email', version: 1, index: 'users.email', normalize: email, bits: 256, input: '  Alice.Example@Example.COM\t' },
  { name: 'good_email_same_after_normalising', version: 1, index: 'users.email', normalize: email, bits: 256, input: 'alice.example@example.com' },
  { name: 'good_email_v2', version: 2, index: 'users.email', normalize: email, bits: 256, input: 'alice.example@example.com' },
  { name: 'good_email_max_version', version: 4294967295, index: 'users.email', normalize: email, bits: 256, input: 'alice.example@example.com' },
  { name: 'good_email_other_index', version: 1, index: 'users.backup_email', normalize: email, bits: 256, input: 'alice.example@example.com' },
  { name: 'good_no_normaliser', version: 1, index: 'users.email', normalize: [], bits: 256, input: 'Alice.Example@Example.COM' },
  { name: 'good_empty', version: 1, index: 'users.email', normalize: [], bits: 256, input: '' },
  { name: 'good_long_input', version: 1, index: 'docs.body', normalize: [], bits: 256, input: 'x'.repeat(1000) },
  { name: 'good_fullwidth_nfkc', version: 1, index: 'users.name', normalize: ['nfkc', 'fold'], bits: 256, input: 'ＦＵＬＬ Width ﬁ' },
  { name: 'good_fold_sharp_s', version: 1, index: 'users.street', normalize: ['nfkc', 'fold'], bits: 256, input: 'Straße', normalized: 'strasse' }, // 00DF; F; 0073 0073
  { name: 'good_fold_kelvin', version: 1, index: 'users.street', normalize: ['fold'], bits: 256, input: '\u212a', normalized: 'k' }, // 212A; C; 006B
  { name: 'good_fold_final_sigma', version: 1, index: 'users.name', normalize: ['fold'], bits: 256, input: 'ΟΔΟΣ', normalized: 'οδοσ' }, // 03A3; C; 03C3
  { name: 'good_combining_nfkc', version: 1, index: 'users.name', normalize: ['nfkc'], bits: 256, input: 'Cafe\u0301' },
  { name: 'good_digits_phone', version: 2, index: 'users.phone', normalize: ['nfkc', 'digits'], bits: 256, input: '+44 (20) 7946-0958 ext. ９' },
  { name: 'good_digits_none', version: 1, index: 'users.phone', normalize: ['digits'], bits: 256, input: 'no digits' },
  ...[1, 7, 8, 9, 12, 16, 20, 31, 32, 64, 100, 128, 255].map((bits) => ({
    name: `good_bits_${bits}`, version: 1, index: 'users.email', normalize: email, bits, input: 'alice.example@example.com',
  })),
  { name: 'good_slow_default_params', version: 1, index: 'users.ssn', normalize: ['digits'], bits: 256, input: '078-05-1120', slow: { t: 2, m: 19456, p: 1 } },
  { name: 'good_slow_small', version: 2, index: 'users.ssn', normalize: ['digits'], bits: 256, input: '078-05-1120', slow: { t: 1, m: 64, p: 1 } },
  { name: 'good_slow_threads_truncated', version: 1, index: 'users.dob', normalize: ['trim'], bits: 20, input: ' 1970-01-01 ', slow: { t: 3, m: 256, p: 2 } },
  { name: 'good_slow_max_version', version: 4294967295, index: 'users.pin', normalize: [], bits: 256, input: '0000', slow: { t: 1, m: 64, p: 1 } },
];

function normalise(c) {
  let s = c.input;
  for (const n of c.normalize) s = normalisers[n](s);
  return c.normalized ?? s;
}

function truncate(mac, bits) {
  const out = Buffer.from(mac.subarray(0, Math.ceil(bits / 8)));
  if (bits % 8 !== 0) out[out.length - 1] &= (0xff << (8 - (bits % 8))) & 0xff;
  return out;
}

async function value(c, normalized) {
  const root = Buffer.from(keys[c.version], 'hex');
  if (c.slow) {
    const info = `colcrypt/blindindex/v1|argon2id|t=${c.slow.t}|m=${c.slow.m}|p=${c.slow.p}|bits=${c.bits}|name=${c.index}`;
    const kcol = Buffer.from(hkdfSync('sha256', root, Buffer.alloc(0), Buffer.from(info, 'utf8'), 32));
    const mac = await argon2id({
      password: Buffer.from(normalized, 'utf8'), salt: kcol,
      iterations: c.slow.t, memorySize: c.slow.m, parallelism: c.slow.p,
      hashLength: 32, outputType: 'binary',
    });
    return { info, value: `a${c.version}:` + truncate(Buffer.from(mac), c.bits).toString('base64url') };
  }
  const info = `colcrypt/blindindex/v1|hmac-sha256|bits=${c.bits}|name=${c.index}`;
  const kcol = Buffer.from(hkdfSync('sha256', root, Buffer.alloc(0), Buffer.from(info, 'utf8'), 32));
  const mac = createHmac('sha256', kcol).update(Buffer.from(normalized, 'utf8')).digest();
  return { info, value: `b${c.version}:` + truncate(mac, c.bits).toString('base64url') };
}

const good = [];
for (const c of cases) {
  const normalized = normalise(c);
  const { info, value: v } = await value(c, normalized);
  good.push({
    name: c.name, version: c.version, index: c.index, normalize: c.normalize, bits: c.bits,
    ...(c.slow ? { slow: c.slow } : {}),
    input: c.input, normalized, info, value: v,
  });
}

// Stored values that must be rejected as malformed.
const fail_values = [
  { name: 'fail_empty', value: '' },
  { name: 'fail_no_prefix', value: 'AAAA' },
  { name: 'fail_data_prefix', value: 'v1:AAAA' },
  { name: 'fail_no_version', value: 'b:AAAA' },
  { name: 'fail_no_colon', value: 'b1AAAA' },
  { name: 'fail_version_zero', value: 'b0:AAAA' },
  { name: 'fail_leading_zero', value: 'b01:AAAA' },
  { name: 'fail_version_too_large', value: 'b4294967296:AAAA' },
  { name: 'fail_version_too_long', value: 'b12345678901:AAAA' },
  { name: 'fail_negative_version', value: 'b-1:AAAA' },
  { name: 'fail_empty_payload', value: 'b1:' },
  { name: 'fail_padding', value: 'b1:AA==' },
  { name: 'fail_standard_base64', value: 'b1:ab+/' },
  { name: 'fail_bad_base64_length', value: 'b1:A' },
  { name: 'fail_non_canonical_base64', value: 'b1:AB' },
  { name: 'fail_line_break', value: 'b1:AA\nAA' },
  { name: 'fail_too_long_payload', value: 'b1:' + Buffer.alloc(33).toString('base64url') },
  { name: 'fail_space', value: ' b1:AAAA' },
];

// Configurations that New must reject.
const fail_configs = [
  { name: 'fail_config_empty_name', index: '', bits: 0 },
  { name: 'fail_config_name_space', index: 'users email', bits: 0 },
  { name: 'fail_config_name_pipe', index: 'users|email', bits: 0 },
  { name: 'fail_config_name_non_ascii', index: 'usérs.email', bits: 0 },
  { name: 'fail_config_name_too_long', index: 'x'.repeat(129), bits: 0 },
  { name: 'fail_config_bits_negative', index: 'users.email', bits: -1 },
  { name: 'fail_config_bits_too_many', index: 'users.email', bits: 257 },
  { name: 'fail_config_slow_memory_too_small', index: 'users.ssn', bits: 0, slow: { t: 1, m: 15, p: 2 } },
];

process.stdout.write(JSON.stringify({ keys, good, fail_values, fail_configs }, null, 1) + '\n');
