#!/usr/bin/env node
// An outside agent's DPoP proof (RFC 9449), made with the `jose` npm package alone, for
// Bonafide's proof-of-possession tests (crates/core/tests/suite/dpop.rs and the server's
// end-to-end tests). Nothing here comes from Bonafide: the key is loaded, the
// thumbprint computed and the proof signed by jose (and node:crypto for key loading).
//
//   node dpop_proof.mjs --key-file FILE --htm METHOD --htu URI --access-token TOKEN
//                       [--iat SECONDS] [--jti ID] [--json]
//
//   --key-file      the agent's private key: PEM (PKCS#8 `PRIVATE KEY`, or SEC1/PKCS#1
//                   forms node reads) or a private JWK (JSON). Ed25519 signs EdDSA,
//                   P-256 signs ES256, RSA signs RS256.
//   --htm, --htu    the request's method and target URI, written into the proof as
//                   given (pass htu without query and fragment).
//   --access-token  the token presented with the proof; `ath` is
//                   base64url(SHA-256(ASCII of it)).
//   --iat           creation time, Unix seconds (default: now).
//   --jti           proof id (default: 128 random bits, base64url).
//   --json          print a JSON object instead of the bare proof:
//                   {"proof","jkt","alg","htm","htu","access_token","iat","jti"}, jkt
//                   being the key's RFC 7638 thumbprint as jose computes it.
//
// stdout: the compact proof JWS (or the JSON object) and a newline.
// Header: {"typ":"dpop+jwt","alg":…,"jwk":<public JWK, required members only>}.
// Claims: {"jti","htm","htu","iat","ath"}.
//
// Exit codes: 0 ok, 2 usage error, 3 environment error (key unreadable or of an
// unsupported type).

import { createHash, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SignJWT, calculateJwkThumbprint, exportJWK } from 'jose';

const EXIT_USAGE = 2;
const EXIT_ENV = 3;
const USAGE =
  'usage: dpop_proof.mjs --key-file FILE --htm METHOD --htu URI --access-token TOKEN ' +
  '[--iat SECONDS] [--jti ID] [--json]';

// Members of a public JWK that RFC 7638 hashes; the proof's jwk carries only these.
const REQUIRED = { OKP: ['kty', 'crv', 'x'], EC: ['kty', 'crv', 'x', 'y'], RSA: ['kty', 'n', 'e'] };

function fail(code, message) {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

let values;
try {
  ({ values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      'key-file': { type: 'string' },
      htm: { type: 'string' },
      htu: { type: 'string' },
      'access-token': { type: 'string' },
      iat: { type: 'string' },
      jti: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  }));
} catch (e) {
  fail(EXIT_USAGE, `${e.message}\n${USAGE}`);
}
for (const name of ['key-file', 'htm', 'htu', 'access-token']) {
  if (values[name] === undefined) fail(EXIT_USAGE, `missing --${name}\n${USAGE}`);
}
let iat = Math.floor(Date.now() / 1000);
if (values.iat !== undefined) {
  if (!/^-?\d+$/.test(values.iat)) fail(EXIT_USAGE, `--iat must be an integer\n${USAGE}`);
  iat = Number(values.iat);
}
const jti = values.jti ?? b64url(randomBytes(16));

let privateKey;
try {
  const text = readFileSync(values['key-file'], 'utf8');
  privateKey = text.trimStart().startsWith('{')
    ? createPrivateKey({ key: JSON.parse(text), format: 'jwk' })
    : createPrivateKey(text);
} catch (e) {
  fail(EXIT_ENV, `cannot load a private key from ${values['key-file']}: ${e.message}`);
}

const full = await exportJWK(createPublicKey(privateKey));
const public_ = Object.fromEntries((REQUIRED[full.kty] ?? []).map((m) => [m, full[m]]));
let alg;
if (full.kty === 'OKP' && full.crv === 'Ed25519') alg = 'EdDSA';
else if (full.kty === 'EC' && full.crv === 'P-256') alg = 'ES256';
else if (full.kty === 'RSA') alg = 'RS256';
else fail(EXIT_ENV, `unsupported key type ${full.kty}/${full.crv} (use Ed25519, P-256 or RSA)`);

const ath = b64url(createHash('sha256').update(values['access-token'], 'ascii').digest());
const proof = await new SignJWT({ jti, htm: values.htm, htu: values.htu, iat, ath })
  .setProtectedHeader({ typ: 'dpop+jwt', alg, jwk: public_ })
  .sign(privateKey);

if (values.json) {
  const out = {
    proof,
    jkt: await calculateJwkThumbprint(public_, 'sha256'),
    alg,
    htm: values.htm,
    htu: values.htu,
    access_token: values['access-token'],
    iat,
    jti,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
} else {
  process.stdout.write(`${proof}\n`);
}
