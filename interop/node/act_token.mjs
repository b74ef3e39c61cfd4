#!/usr/bin/env node
// AgentOAuth-style consent tokens (`ver` act.v0.2/act.v0.3) made with the `jose` npm
// package, as an outside signer for Bonafide's tests (crates/server/tests/suite/consent_tokens.rs).
// The header is what AgentOAuth's SDK writes: {"alg":"EdDSA","kid":<issuer's own key
// name>,"typ":"JWT"}; the claims are given as they are, nothing is added.
//
//   node act_token.mjs keygen
//       stdout: {"private": <Ed25519 private JWK>, "public": <public JWK>}   exit 0
//   node act_token.mjs sign --jwk-file FILE --kid KID --claims-file FILE
//       stdout: the compact JWS                                              exit 0
//
// Exit codes: 0 ok, 2 usage error, 3 environment error (unreadable file, bad key).

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SignJWT, exportJWK, generateKeyPair, importJWK } from 'jose';

const EXIT_USAGE = 2;
const EXIT_ENV = 3;

function fail(code, message) {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

async function keygen() {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', {
    crv: 'Ed25519',
    extractable: true,
  });
  const out = { private: await exportJWK(privateKey), public: await exportJWK(publicKey) };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

async function sign(args) {
  const { values } = parseArgs({
    args,
    options: {
      'jwk-file': { type: 'string' },
      kid: { type: 'string' },
      'claims-file': { type: 'string' },
    },
  });
  if (!values['jwk-file'] || !values.kid || !values['claims-file']) {
    fail(EXIT_USAGE, 'usage: act_token.mjs sign --jwk-file FILE --kid KID --claims-file FILE');
  }
  let jwk;
  let claims;
  try {
    jwk = JSON.parse(readFileSync(values['jwk-file'], 'utf8'));
    claims = JSON.parse(readFileSync(values['claims-file'], 'utf8'));
  } catch (e) {
    fail(EXIT_ENV, `cannot read input: ${e.message}`);
  }
  let key;
  try {
    key = await importJWK(jwk, 'EdDSA');
  } catch (e) {
    fail(EXIT_ENV, `not an Ed25519 private JWK: ${e.message}`);
  }
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', kid: values.kid, typ: 'JWT' })
    .sign(key);
  process.stdout.write(`${token}\n`);
}

const [command, ...rest] = process.argv.slice(2);
if (command === 'keygen') {
  await keygen();
} else if (command === 'sign') {
  await sign(rest);
} else {
  fail(EXIT_USAGE, 'usage: act_token.mjs keygen | sign --jwk-file FILE --kid KID --claims-file FILE');
}
