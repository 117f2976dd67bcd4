// Decrypts values written by colcrypt's Go code with the seed's Node.js
// decrypt, proving the Go → Node direction. Reads JSON from stdin:
//
//	{"keys": {"<version>": "<hex key>"}, "values": [{"value": "v1:…", "plaintext": "…"}]}
//
// and exits non-zero, naming the first value that does not decrypt to its
// plaintext. Run by encryptedtype's TestInteropGoToNode.
import { decryptVersioned } from './seed.mjs';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const { keys, values } = JSON.parse(input);
const byVersion = Object.fromEntries(Object.entries(keys).map(([v, k]) => [v, Buffer.from(k, 'hex')]));
let ok = 0;
for (const [i, { value, plaintext }] of values.entries()) {
  let got;
  try {
    got = decryptVersioned(value, byVersion);
  } catch (e) {
    console.error(`value ${i}: seed decrypt failed: ${e.message}`);
    process.exit(1);
  }
  if (got !== plaintext) {
    console.error(`value ${i}: seed decrypt returned a different plaintext`);
    process.exit(1);
  }
  ok++;
}
console.log(`${ok} values decrypted by the seed's code`);
