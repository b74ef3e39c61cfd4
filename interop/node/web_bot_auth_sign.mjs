#!/usr/bin/env node
// Signs one HTTP request with the `web-bot-auth` npm package (Cloudflare's Web Bot Auth
// implementation over `http-message-sig`, RFC 9421), as an independent signer for
// Bonafide's verifier (crates/core/src/httpsig.rs).
//
//   node web_bot_auth_sign.mjs --jwk FILE --url URL [--method M] [--header 'Name: value']...
//       [--signature-agent VALUE] [--created SECS] [--expires SECS] [--nonce B64]
//       [--components C1,C2,...] [--label LABEL]
//
//   --jwk FILE          private JWK: OKP Ed25519 (signed by the package's own Ed25519
//                       signer) or EC P-256 (a WebCrypto ECDSA P-256 SHA-256 signer
//                       plugged into the package, alg `ecdsa-p256-sha256`)
//   --url URL           absolute target URI; printed back as WHATWG-normalized `url`
//   --method M          default GET
//   --header 'N: v'     extra request header, repeatable
//   --signature-agent V Signature-Agent header value (then covered, as the package does)
//   --created SECS      Unix seconds, default now
//   --expires SECS      Unix seconds, default created + 300
//   --nonce B64         standard base64 of 64 bytes (the package's rule); default random
//   --components LIST   covered components, comma-separated; default the package's
//                       (`@authority`, plus `signature-agent` when that header is set)
//   --label LABEL       dictionary label, default the package's (`sig1`)
//
// stdout (exit 0): {"method", "url", "keyid", "alg", "headers": {"Signature",
//   "Signature-Input", "Signature-Agent"?, extra headers...}}
// Exit codes: 0 ok, 2 usage error, 3 environment error (key unreadable, signing failed).

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { signatureHeaders } from 'web-bot-auth';
import { helpers, signerFromJWK } from 'web-bot-auth/crypto';
import { jwkToKeyID } from 'web-bot-auth';

const EXIT_USAGE = 2;
const EXIT_ENV = 3;

function fail(code, message) {
  process.stderr.write(`web_bot_auth_sign: ${message}\n`);
  process.exit(code);
}

// RFC 9421 §3.3.4 ecdsa-p256-sha256: WebCrypto ECDSA output is already fixed-size r||s.
class EcdsaP256Signer {
  constructor(keyid, privateKey) {
    this.alg = 'ecdsa-p256-sha256';
    this.keyid = keyid;
    this.privateKey = privateKey;
  }

  static async fromJWK(jwk) {
    const key = await crypto.subtle.importKey(
      'jwk',
      { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d },
      { name: 'ECDSA', namedCurve: 'P-256' },
      false,
      ['sign'],
    );
    const keyid = await jwkToKeyID(jwk, helpers.WEBCRYPTO_SHA256, helpers.BASE64URL_DECODE);
    return new EcdsaP256Signer(keyid, key);
  }

  async sign(data) {
    const sig = await crypto.subtle.sign(
      { name: 'ECDSA', hash: 'SHA-256' },
      this.privateKey,
      new TextEncoder().encode(data),
    );
    return new Uint8Array(sig);
  }
}

async function main() {
  let args;
  try {
    ({ values: args } = parseArgs({
      options: {
        jwk: { type: 'string' },
        url: { type: 'string' },
        method: { type: 'string', default: 'GET' },
        header: { type: 'string', multiple: true, default: [] },
        'signature-agent': { type: 'string' },
        created: { type: 'string' },
        expires: { type: 'string' },
        nonce: { type: 'string' },
        components: { type: 'string' },
        label: { type: 'string' },
      },
      strict: true,
    }));
  } catch (e) {
    fail(EXIT_USAGE, e.message);
  }
  if (!args.jwk || !args.url) fail(EXIT_USAGE, '--jwk and --url are required');

  const secs = (name, fallback) => {
    if (args[name] === undefined) return fallback;
    if (!/^\d+$/.test(args[name])) fail(EXIT_USAGE, `--${name} must be Unix seconds`);
    return Number(args[name]);
  };
  const created = secs('created', Math.floor(Date.now() / 1000));
  const expires = secs('expires', created + 300);

  const headers = new Headers();
  const extra = {};
  for (const line of args.header) {
    const i = line.indexOf(':');
    if (i <= 0) fail(EXIT_USAGE, `--header must be 'Name: value', got '${line}'`);
    const name = line.slice(0, i).trim();
    const value = line.slice(i + 1).trim();
    headers.append(name, value);
    extra[name] = value;
  }
  if (args['signature-agent'] !== undefined) {
    headers.set('Signature-Agent', args['signature-agent']);
  }

  let jwk;
  try {
    jwk = JSON.parse(readFileSync(args.jwk, 'utf8'));
  } catch (e) {
    fail(EXIT_ENV, `cannot read --jwk: ${e.message}`);
  }

  let request;
  try {
    request = new Request(args.url, { method: args.method, headers });
  } catch (e) {
    fail(EXIT_USAGE, `bad request: ${e.message}`);
  }

  let signer;
  try {
    signer =
      jwk.kty === 'EC' && jwk.crv === 'P-256'
        ? await EcdsaP256Signer.fromJWK(jwk)
        : await signerFromJWK(jwk);
  } catch (e) {
    fail(EXIT_ENV, `cannot load key: ${e.message}`);
  }

  const params = {
    created: new Date(created * 1000),
    expires: new Date(expires * 1000),
  };
  if (args.nonce !== undefined) params.nonce = args.nonce;
  if (args.label !== undefined) params.key = args.label;
  if (args.components !== undefined) params.components = args.components.split(',');

  let signed;
  try {
    signed = await signatureHeaders(request, signer, params);
  } catch (e) {
    fail(EXIT_ENV, `signing failed: ${e.message}`);
  }

  const out = { ...extra };
  if (args['signature-agent'] !== undefined) out['Signature-Agent'] = args['signature-agent'];
  out['Signature-Input'] = signed['Signature-Input'];
  out.Signature = signed.Signature;
  process.stdout.write(
    `${JSON.stringify({
      method: request.method,
      url: request.url,
      keyid: signer.keyid,
      alg: signer.alg,
      headers: out,
    })}\n`,
  );
}

main().catch((e) => fail(EXIT_ENV, e.stack ?? String(e)));
