#!/usr/bin/env node
// A consent token made the way AgentOAuth's SDK makes one (`issueConsent` in
// @agentoauth/sdk's src/consent.ts, signed by its `request`): the `jose` npm package,
// EdDSA, header {"alg": <the JWK's alg or EdDSA>, "kid": <keyId>, "typ": "JWT"}, and the
// SDK's claim layout: ver act.v0.2, jti (a random UUID unless given), user, agent,
// scope, limit, aud (only when given), exp = now + expiresIn, nonce (a random UUID),
// policy and policy_hash = "sha256:" + hex SHA-256 of the policy with its keys sorted
// recursively, compact JSON (the SDK's hashPolicy). No iat, and no iss unless --iss
// is given (the SDK's payload type allows one; `issueConsent` itself writes none). For Bonafide's tests (crates/server/tests/suite/compat_agentoauth.rs).
//
//   node agentoauth_issue_consent.mjs --jwk-file FILE --kid KID --user U --agent A
//        --scope S --policy-file FILE [--expires-in SECONDS] [--audience AUD]
//        [--jti JTI] [--limit-amount N --limit-currency C] [--iss ISS]
//       stdout: {"token": <compact JWS>, "jti": <jti>, "policy_hash": <hash>}   exit 0
//
// Exit codes: 0 ok, 2 usage error, 3 environment error (unreadable file, bad key).

import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SignJWT, importJWK } from 'jose';

const EXIT_USAGE = 2;
const EXIT_ENV = 3;

function fail(code, message) {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

// The SDK's canonicalizePolicy: keys sorted recursively, arrays in order, compact.
function sortKeys(v) {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(sortKeys);
  const out = {};
  for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k]);
  return out;
}

function hashPolicy(policy) {
  const canonical = JSON.stringify(sortKeys(JSON.parse(JSON.stringify(policy))));
  return `sha256:${createHash('sha256').update(canonical, 'utf8').digest('hex')}`;
}

const { values } = parseArgs({
  options: {
    'jwk-file': { type: 'string' },
    kid: { type: 'string' },
    user: { type: 'string' },
    agent: { type: 'string' },
    scope: { type: 'string' },
    'policy-file': { type: 'string' },
    'expires-in': { type: 'string' },
    audience: { type: 'string' },
    jti: { type: 'string' },
    'limit-amount': { type: 'string' },
    'limit-currency': { type: 'string' },
    iss: { type: 'string' },
  },
});
for (const required of ['jwk-file', 'kid', 'user', 'agent', 'scope', 'policy-file']) {
  if (!values[required]) fail(EXIT_USAGE, `--${required} is required`);
}
let jwk;
let policy;
try {
  jwk = JSON.parse(readFileSync(values['jwk-file'], 'utf8'));
  policy = JSON.parse(readFileSync(values['policy-file'], 'utf8'));
} catch (e) {
  fail(EXIT_ENV, `cannot read input: ${e.message}`);
}
const expiresIn = Number.parseInt(values['expires-in'] ?? '3600', 10);
const payload = {
  ver: 'act.v0.2',
  jti: values.jti || randomUUID(),
  user: values.user,
  agent: values.agent,
  scope: values.scope,
  limit: {
    amount: Number(values['limit-amount'] ?? '500'),
    currency: values['limit-currency'] ?? 'USD',
  },
  aud: values.audience,
  exp: Math.floor(Date.now() / 1000) + expiresIn,
  nonce: randomUUID(),
};
if (values.iss) payload.iss = values.iss;
payload.policy = policy;
payload.policy_hash = hashPolicy(policy);
let key;
try {
  key = await importJWK(jwk, jwk.alg || 'EdDSA');
} catch (e) {
  fail(EXIT_ENV, `not an Ed25519 private JWK: ${e.message}`);
}
// jose drops `aud: undefined` when serialising, as JSON.stringify does in the SDK.
const token = await new SignJWT(payload)
  .setProtectedHeader({ alg: jwk.alg || 'EdDSA', kid: values.kid, typ: 'JWT' })
  .sign(key);
process.stdout.write(
  `${JSON.stringify({ token, jti: payload.jti, policy_hash: payload.policy_hash })}\n`,
);
