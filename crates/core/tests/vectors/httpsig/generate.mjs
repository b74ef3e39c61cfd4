#!/usr/bin/env node
// Regenerates the `web_bot_auth_*.json` and `fail_web_bot_auth_*.json` vectors in this
// directory by signing with the independent `web-bot-auth` npm package through
// interop/node/web_bot_auth_sign.mjs (run `npm ci` in interop/node first):
//
//   node crates/core/tests/vectors/httpsig/generate.mjs
//
// Ed25519 cases are deterministic (same bytes on every run); the ECDSA P-256 case is
// randomized, so its signature changes each time it is regenerated. The `rfc9421_*`
// files are copied from RFC 9421 by hand and not touched here.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const script = join(here, '../../../../../interop/node/web_bot_auth_sign.mjs');
const ED = 'rfc9421_b1_4_ed25519.private.jwk.json';
const EC = 'rfc9421_b1_3_ecc_p256.private.jwk.json';
const CREATED = 1750000000;
const EXPIRES = CREATED + 300;
// 64 bytes, standard base64: the package's nonce rule.
const NONCE = Buffer.from(Array.from({ length: 64 }, (_, i) => i)).toString('base64');

function publicJwk(file) {
  const { d: _d, ...pub } = JSON.parse(readFileSync(join(here, file), 'utf8'));
  return pub;
}

function sign(keyFile, args) {
  const out = execFileSync(
    process.execPath,
    [script, '--jwk', join(here, keyFile), '--created', `${CREATED}`, '--expires', `${EXPIRES}`, ...args],
    { encoding: 'utf8' },
  );
  return JSON.parse(out);
}

function write(name, value) {
  writeFileSync(join(here, `${name}.json`), `${JSON.stringify(value, null, 2)}\n`);
}

function makeCase(name, keyFile, args, covered, label) {
  const signed = sign(keyFile, args);
  const value = {
    source: `web-bot-auth 0.1.3 (npm) via interop/node/web_bot_auth_sign.mjs ${args.join(' ')}`,
    public_jwk: publicJwk(keyFile),
    now: CREATED + 10,
    request: {
      method: signed.method,
      url: signed.url,
      headers: Object.entries(signed.headers),
    },
    expect: {
      label,
      keyid: signed.keyid,
      alg: signed.alg,
      created: CREATED,
      expires: EXPIRES,
      nonce: NONCE,
      tag: 'web-bot-auth',
      covered,
    },
  };
  write(name, value);
  return value;
}

const withAgent = makeCase(
  'web_bot_auth_ed25519_signature_agent',
  ED,
  ['--url', 'https://example.com/path?x=1', '--nonce', NONCE, '--signature-agent', '"https://signature-agent.test"'],
  ['@authority', 'signature-agent'],
  'sig1',
);
makeCase(
  'web_bot_auth_ed25519_default',
  ED,
  ['--url', 'https://example.com/', '--method', 'POST', '--nonce', NONCE, '--header', 'Content-Type: application/json'],
  ['@authority'],
  'sig1',
);
makeCase(
  'web_bot_auth_ed25519_port',
  ED,
  ['--url', 'http://example.com:8080/a/b?c=d&e', '--nonce', NONCE, '--components', '@authority,@scheme,@target-uri,@request-target,@path,@query'],
  ['@authority', '@scheme', '@target-uri', '@request-target', '@path', '@query'],
  'sig1',
);
makeCase(
  'web_bot_auth_ecdsa_p256',
  EC,
  [
    '--url', 'https://example.com/foo?param=Value&Pet=dog', '--method', 'POST', '--nonce', NONCE, '--label', 'sig2',
    '--header', 'Content-Type: application/json', '--signature-agent', '"https://agent.example"',
    '--components', '@authority,@method,@path,@query,content-type,signature-agent',
  ],
  ['@authority', '@method', '@path', '@query', 'content-type', 'signature-agent'],
  'sig2',
);

// Negative cases derived from the Signature-Agent case: one change each.
const fail = (name, change, mutate, error) => {
  const value = structuredClone(withAgent);
  value.derived_from = 'web_bot_auth_ed25519_signature_agent.json';
  value.change = change;
  mutate(value);
  delete value.expect;
  value.expect_error = error;
  write(name, value);
};
fail('fail_web_bot_auth_authority_changed', 'host example.com -> example.org', (v) => {
  v.request.url = 'https://example.org/path?x=1';
}, 'BadSignature');
fail('fail_web_bot_auth_signature_agent_changed', 'Signature-Agent value changed', (v) => {
  v.request.headers = v.request.headers.map(([k, val]) =>
    k === 'Signature-Agent' ? [k, '"https://evil.test"'] : [k, val]);
}, 'BadSignature');
fail('fail_web_bot_auth_expired', 'verified 1 hour after expires', (v) => {
  v.now = EXPIRES + 3600;
}, 'Expired');
fail('fail_web_bot_auth_tag_changed', 'tag="web-bot-auth" -> tag="other" in Signature-Input', (v) => {
  v.request.headers = v.request.headers.map(([k, val]) =>
    k === 'Signature-Input' ? [k, val.replace('tag="web-bot-auth"', 'tag="other"')] : [k, val]);
}, 'NoSignatureWithTag');
