#!/usr/bin/env node
// Bonafide interop client built on the `jose` npm package (https://github.com/panva/jose).
//
//   node jose_client.mjs verify --jwks URL|FILE --token-file FILE [--audience A] [--issuer I]
//       stdout: {"valid": true, "claims": {...}, "header": {...}}   exit 0
//               {"valid": false, "error": "...", "code": "ERR_..."}  exit 1
//   node jose_client.mjs attack --kind KIND --out-file FILE --token-file FILE [--jwks URL|FILE]
//       writes one malicious compact JWS to FILE, prints nothing     exit 0
//
// Exit codes: 0 ok, 1 verification failure, 2 usage error, 3 environment error
// (JWKS/token unreadable; no verdict). See interop/README.md.

import { createHmac } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  SignJWT,
  UnsecuredJWT,
  base64url,
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeProtectedHeader,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  importJWK,
  jwtVerify,
} from 'jose';

const EXIT_OK = 0;
const EXIT_INVALID = 1;
const EXIT_USAGE = 2;
const EXIT_ENV = 3;

const TYP = 'agent+jwt';
const ALGS = ['RS256', 'ES256', 'EdDSA'];
const REQUIRED = ['exp', 'iat', 'iss', 'sub'];
const KINDS = ['none', 'hs256-pubkey', 'embedded-jwk', 'jku', 'x5u', 'crit', 'tampered-payload'];
const ATTACKER_URL = 'https://attacker.example/jwks.json';
const ATTACKER_X5U = 'https://attacker.example/cert.pem';
const TAMPER_SCOPE = 'admin:all';

class UsageError extends Error {}
class EnvError extends Error {}

const USAGE = `usage:
  jose_client.mjs verify --jwks URL|FILE --token-file FILE [--audience A] [--issuer I]
  jose_client.mjs attack --kind {${KINDS.join(',')}} --out-file FILE --token-file FILE [--jwks URL|FILE]`;

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const isUrl = (s) => /^https?:\/\//.test(s);
const enc = new TextEncoder();
const dec = new TextDecoder();

function readText(path, what) {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new EnvError(`cannot read ${what} ${path}: ${e.message}`);
  }
}

async function loadJwksJson(source) {
  let text;
  if (isUrl(source)) {
    try {
      const res = await fetch(source, { signal: AbortSignal.timeout(10000) });
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      text = await res.text();
    } catch (e) {
      throw new EnvError(`cannot load JWKS from ${source}: ${e.message}`);
    }
  } else {
    text = readText(source, 'JWKS');
  }
  try {
    const jwks = JSON.parse(text);
    if (!jwks || !Array.isArray(jwks.keys)) throw new Error("no 'keys' array");
    return jwks;
  } catch (e) {
    throw new EnvError(`JWKS from ${source} is unusable: ${e.message}`);
  }
}

function splitToken(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new EnvError('token is not a 3-segment compact JWS');
  try {
    return {
      header: JSON.parse(dec.decode(base64url.decode(parts[0]))),
      claims: JSON.parse(dec.decode(base64url.decode(parts[1]))),
      parts,
    };
  } catch (e) {
    throw new EnvError(`token segments are not base64url JSON: ${e.message}`);
  }
}

// ------------------------------------------------------------------ verify
async function verify(opts) {
  let token;
  let jwks;
  // Set when the remote JWKS could not be fetched, so that the failure is
  // reported as an environment error (exit 3), never as a refusal.
  let fetchFailure = null;
  try {
    token = readText(opts['token-file'], 'token file').trim();
    if (isUrl(opts.jwks)) {
      jwks = createRemoteJWKSet(new URL(opts.jwks), {
        timeoutDuration: 10000,
        [customFetch]: async (url, init) => {
          try {
            const res = await fetch(url, init);
            if (res.status !== 200) fetchFailure = `HTTP ${res.status} from ${url}`;
            return res;
          } catch (e) {
            fetchFailure = `${e.message}${e.cause ? ` (${e.cause.message ?? e.cause})` : ''}`;
            throw e;
          }
        },
      });
    } else {
      jwks = createLocalJWKSet(JSON.parse(readText(opts.jwks, 'JWKS')));
    }
  } catch (e) {
    emit({ valid: false, error: e.message, env_error: true });
    return EXIT_ENV;
  }

  const options = { typ: TYP, algorithms: ALGS, requiredClaims: REQUIRED };
  if (opts.issuer !== undefined) options.issuer = opts.issuer;
  if (opts.audience !== undefined) options.audience = opts.audience;
  try {
    // The JWK set picks the key by the header's kid (and the key's alg).
    const { payload, protectedHeader } = await jwtVerify(token, jwks, options);
    emit({ valid: true, claims: payload, header: protectedHeader });
    return EXIT_OK;
  } catch (e) {
    if (fetchFailure !== null || e?.code === 'ERR_JWKS_TIMEOUT') {
      emit({ valid: false, error: `cannot load JWKS: ${fetchFailure ?? e.message}`, env_error: true });
      return EXIT_ENV;
    }
    emit({ valid: false, error: `${e?.name ?? 'Error'}: ${e?.message ?? e}`, code: e?.code ?? null });
    return EXIT_INVALID;
  }
}

// ------------------------------------------------------------------ attack
function normAlg(alg) {
  return ALGS.includes(alg) ? alg : 'EdDSA';
}

async function signWithAttackerKey(claims, alg, extraHeader, signOptions = {}) {
  alg = normAlg(alg);
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const header = { alg, typ: TYP, ...extraHeader };
  if (header.jwk === null) header.jwk = await exportJWK(publicKey);
  return new SignJWT(claims).setProtectedHeader(header).sign(privateKey, signOptions);
}

async function attack(opts) {
  if (!opts['token-file']) throw new UsageError('attack needs --token-file (a genuine token to copy from)');
  const token = readText(opts['token-file'], 'token file').trim();
  const { header, claims, parts } = splitToken(token);
  const kid = header.kid;
  const alg = header.alg;
  let out;

  switch (opts.kind) {
    case 'none': {
      // jose's UnsecuredJWT builds the alg=none JWT, but its header is fixed to
      // {"alg":"none"}; keep its payload and put kid/typ in the header by hand.
      const unsecured = new UnsecuredJWT(claims).encode();
      const h = base64url.encode(JSON.stringify({ alg: 'none', typ: TYP, kid }));
      out = `${h}.${unsecured.split('.')[1]}.`;
      break;
    }
    case 'hs256-pubkey': {
      if (!opts.jwks) throw new UsageError('hs256-pubkey needs --jwks');
      const jwks = await loadJwksJson(opts.jwks);
      const real = jwks.keys.find((k) => k && k.kid === kid);
      if (!real) throw new EnvError(`kid ${JSON.stringify(kid)} not in JWKS`);
      // jose converts the published JWK to a key and exports it as SPKI PEM.
      const pub = await importJWK(real, real.alg, { extractable: true });
      // jose's PEM has no final newline; add it so the secret is byte-identical to
      // the PEM that OpenSSL / Python `cryptography` (and so the other clients) produce.
      const spki = await exportSPKI(pub);
      const pem = spki.endsWith('\n') ? spki : `${spki}\n`;
      const hdr = { alg: 'HS256', typ: TYP, kid };
      try {
        // jose accepts raw bytes as an HMAC secret, so it can sign this itself.
        out = await new SignJWT(claims).setProtectedHeader(hdr).sign(enc.encode(pem));
      } catch {
        // Should jose ever refuse PEM-shaped HMAC secrets, compute HS256 with
        // node:crypto over a hand-built signing input instead.
        const h = base64url.encode(JSON.stringify(hdr));
        const p = base64url.encode(JSON.stringify(claims));
        const sig = createHmac('sha256', pem).update(`${h}.${p}`).digest();
        out = `${h}.${p}.${base64url.encode(sig)}`;
      }
      break;
    }
    case 'embedded-jwk':
      out = await signWithAttackerKey(claims, alg, { kid, jwk: null });
      break;
    case 'jku':
      out = await signWithAttackerKey(claims, alg, { kid, jku: ATTACKER_URL });
      break;
    case 'x5u':
      out = await signWithAttackerKey(claims, alg, { kid, x5u: ATTACKER_X5U });
      break;
    case 'crit':
      // RFC 7515 4.1.11: an extension header listed in crit must be present;
      // jose signs it once told the extension is understood ({crit: {exp: true}}).
      out = await signWithAttackerKey(
        claims,
        alg,
        { kid, crit: ['exp'], exp: Math.floor(Date.now() / 1000) + 3600 },
        { crit: { exp: true } },
      );
      break;
    case 'tampered-payload': {
      // No library produces this: the genuine header and signature, a new payload.
      const t = structuredClone(claims);
      t.scope = `${t.scope ?? ''} ${TAMPER_SCOPE}`.trim();
      if (t.agent && typeof t.agent === 'object') {
        t.agent.scopes = [...(Array.isArray(t.agent.scopes) ? t.agent.scopes : []), TAMPER_SCOPE];
      }
      out = `${parts[0]}.${base64url.encode(JSON.stringify(t))}.${parts[2]}`;
      break;
    }
    default:
      throw new UsageError(`unknown --kind ${opts.kind}; one of ${KINDS.join(', ')}`);
  }
  try {
    writeFileSync(opts['out-file'], out);
  } catch (e) {
    throw new EnvError(`cannot write ${opts['out-file']}: ${e.message}`);
  }
  return EXIT_OK;
}

// ------------------------------------------------------------------ main
function parse(argv) {
  const [command, ...rest] = argv;
  const spec = {
    verify: {
      jwks: { type: 'string' },
      'token-file': { type: 'string' },
      audience: { type: 'string' },
      issuer: { type: 'string' },
    },
    attack: {
      kind: { type: 'string' },
      'out-file': { type: 'string' },
      jwks: { type: 'string' },
      'token-file': { type: 'string' },
    },
  }[command];
  if (!spec) throw new UsageError(`unknown command ${JSON.stringify(command ?? '')}`);
  let values;
  try {
    ({ values } = parseArgs({ args: rest, options: spec, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new UsageError(e.message);
  }
  const required = command === 'verify' ? ['jwks', 'token-file'] : ['kind', 'out-file'];
  for (const r of required) if (values[r] === undefined) throw new UsageError(`--${r} is required`);
  if (command === 'attack' && !KINDS.includes(values.kind)) {
    throw new UsageError(`unknown --kind ${values.kind}; one of ${KINDS.join(', ')}`);
  }
  return { command, opts: values };
}

async function main() {
  let code;
  try {
    const { command, opts } = parse(process.argv.slice(2));
    code = command === 'verify' ? await verify(opts) : await attack(opts);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n${USAGE}\n`);
      code = EXIT_USAGE;
    } else if (e instanceof EnvError) {
      process.stderr.write(`error: ${e.message}\n`);
      code = EXIT_ENV;
    } else {
      process.stderr.write(`error: ${e?.stack ?? e}\n`);
      code = EXIT_ENV;
    }
  }
  process.exitCode = code;
}

await main();
