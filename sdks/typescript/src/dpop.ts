// DPoP proofs (RFC 9449): verify one proof against its request and token (the Rust
// core's `dpop::verify`, same order and same rules), and make one on the agent side.
// Replay is the caller's: a verified proof carries its `jti` and how long to remember it.

import * as b64 from "./b64.js";
import type { JsonObject } from "./json.js";
import { ALL_ALGS, JwsError, open, type Protected } from "./jws.js";
import { ctEqual, type Jwk, KeyError, samePublicKey, sha256, thumbprint, VerifyingKey } from "./keys.js";

export const DPOP_TYP = "dpop+jwt";
export const DEFAULT_MAX_AGE_SECS = 300;
export const DEFAULT_LEEWAY_SECS = 60;
export const DEFAULT_MAX_PROOF_BYTES = 8 * 1024;
export const MAX_JTI_LEN = 256;
export const MAX_CLAIM_LEN = 4096;

/** A proof that does not hold: always wire code `PROOF_INVALID`; `message` says why. */
export class DpopError extends Error {
  readonly code = "PROOF_INVALID";
  constructor(message: string) {
    super(message);
    this.name = "DpopError";
  }
}

/** What a proof must match. */
export interface ProofCheck {
  htm: string;
  htu: string;
  /** The token's `cnf.jkt`. */
  jkt: string;
  /** The access token presented with the proof (`ath` must be its hash). */
  accessToken: string;
  now: number;
  maxAge?: number;
  leeway?: number;
  maxBytes?: number;
}

/** A proof that passed every check; only replay is left to the caller. */
export interface VerifiedProof {
  jti: string;
  iat: number;
  alg: string;
  jkt: string;
  /** The last second at which the same proof would be accepted again. */
  replayUntil: number;
  /** The proof's key, parsed (to reuse for the same `jkt`). */
  key: VerifyingKey;
}

function fromJws(e: JwsError): DpopError {
  switch (e.kind) {
    case "wrong_type":
      return e.detail === undefined
        ? new DpopError("DPoP proof header has no `typ`")
        : new DpopError(`DPoP proof type \`${e.detail}\` is not \`dpop+jwt\``);
    case "algorithm_not_allowed":
      return new DpopError(`DPoP proof ${e.message} (use EdDSA, ES256 or RS256)`);
    case "forbidden_header":
      return new DpopError(`header parameter \`${e.detail}\` is not accepted in a DPoP proof: the key is \`jwk\``);
    case "claims_not_object":
      return new DpopError("DPoP proof claims are not a JSON object");
    default:
      return new DpopError(`DPoP proof ${e.message.replace(/^JWS /, "")}`);
  }
}

/** Verifies a DPoP proof; `known` is the bound key already parsed (a cache by thumbprint). */
export async function verifyProof(proof: string, check: ProofCheck, known?: VerifyingKey): Promise<VerifiedProof> {
  const maxAge = check.maxAge ?? DEFAULT_MAX_AGE_SECS;
  const leeway = check.leeway ?? DEFAULT_LEEWAY_SECS;
  let claims: JsonObject;
  let header: Protected;
  let key: VerifyingKey;
  try {
    const opened = await open(
      proof,
      { typ: { expected: DPOP_TYP }, keyFrom: "embedded", algs: ALL_ALGS, maxBytes: check.maxBytes ?? DEFAULT_MAX_PROOF_BYTES },
      async (h) => {
        const jwk = h.jwk as Jwk;
        if (known) {
          if (!ctEqual(known.kid, check.jkt) || !samePublicKey(jwk, known.jwk)) throw new DpopError(THUMBPRINT);
          return known;
        }
        let jkt: string;
        try {
          jkt = await thumbprint(jwk);
        } catch (e) {
          throw new DpopError(`DPoP proof \`jwk\` is not usable: ${(e as Error).message}`);
        }
        if (!ctEqual(jkt, check.jkt)) throw new DpopError(THUMBPRINT);
        try {
          return await VerifyingKey.fromJwk(jwk);
        } catch (e) {
          throw new DpopError(`DPoP proof \`jwk\` is not usable: ${(e as Error).message}`);
        }
      },
    );
    claims = opened.claims;
    header = opened.header;
    key = opened.key;
  } catch (e) {
    if (e instanceof DpopError) throw e;
    if (e instanceof JwsError) throw fromJws(e);
    if (e instanceof KeyError) throw new DpopError(`DPoP proof \`jwk\` is not usable: ${e.message}`);
    throw e;
  }
  const jti = stringClaim(claims, "jti", MAX_JTI_LEN);
  const htm = stringClaim(claims, "htm", MAX_CLAIM_LEN);
  const htu = stringClaim(claims, "htu", MAX_CLAIM_LEN);
  const iatV = claims.iat;
  if (iatV === undefined) throw new DpopError("DPoP proof has no `iat` claim");
  if (typeof iatV !== "number" || !Number.isSafeInteger(iatV)) {
    throw new DpopError("DPoP proof claim `iat` is invalid");
  }
  const iat = iatV;
  const athV = claims.ath;
  if (athV !== undefined && typeof athV !== "string") throw new DpopError("DPoP proof claim `ath` is invalid");
  if (htm !== check.htm) throw new DpopError("DPoP proof `htm` does not match the request method");
  const want = normalizedCached(check.htu);
  if (normalizeHtu(htu) !== want) throw new DpopError("DPoP proof `htu` does not match the request URI");
  if (iat < check.now - maxAge || iat > check.now + leeway) {
    throw new DpopError(`DPoP proof \`iat\` ${iat} is outside the accepted window around ${check.now}`);
  }
  if (athV === undefined) throw new DpopError("DPoP proof has no `ath` claim");
  if (!ctEqual(athV, await athCached(check.accessToken))) {
    throw new DpopError("DPoP proof `ath` does not match the access token");
  }
  return { jti, iat, alg: header.alg, jkt: key.kid, replayUntil: iat + maxAge, key };
}

const THUMBPRINT = "DPoP proof key is not the key the token is bound to (`cnf.jkt`)";

function stringClaim(claims: JsonObject, name: string, max: number): string {
  const v = claims[name];
  if (v === undefined) throw new DpopError(`DPoP proof has no \`${name}\` claim`);
  if (typeof v !== "string" || v.length === 0 || new TextEncoder().encode(v).length > max) {
    throw new DpopError(`DPoP proof claim \`${name}\` is invalid`);
  }
  return v;
}

// The receiver's own URLs and the tokens it sees repeat: their normal form and hash are
// kept (bounded maps, emptied when full), so a proof costs one signature check.
const htuCache = new Map<string, string>();
const athCache = new Map<string, string>();
const MEMO_MAX = 4096;

function normalizedCached(url: string): string {
  let v = htuCache.get(url);
  if (v === undefined) {
    v = normalizeHtu(url);
    if (htuCache.size >= MEMO_MAX) htuCache.clear();
    htuCache.set(url, v);
  }
  return v;
}

async function athCached(token: string): Promise<string> {
  let v = athCache.get(token);
  if (v === undefined) {
    v = await accessTokenHash(token);
    if (athCache.size >= MEMO_MAX) athCache.clear();
    athCache.set(token, v);
  }
  return v;
}

/** `ath`: base64url(SHA-256(the access token)). */
export async function accessTokenHash(token: string): Promise<string> {
  return b64.encode(await sha256(token));
}

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

function isUnreserved(c: string): boolean {
  return UNRESERVED.test(c);
}

/**
 * Normalises an HTTP target URI for comparing `htu` (RFC 9449 §4.3, RFC 3986 §6.2.2 and
 * §6.2.3), dropping query and fragment; throws {@link DpopError} for what it refuses.
 */
export function normalizeHtu(url: string): string {
  const fail = (why: string): never => {
    throw new DpopError(`invalid HTTP target URI: ${why}`);
  };
  if (new TextEncoder().encode(url).length > MAX_CLAIM_LEN) fail("longer than 4096 bytes");
  if (!/^[\x21-\x7e]*$/.test(url)) fail("contains whitespace, control or non-ASCII characters");
  const cut = url.search(/[?#]/);
  const u = cut < 0 ? url : url.slice(0, cut);
  const colon = u.indexOf(":");
  if (colon < 0) fail("no scheme");
  const scheme = u.slice(0, colon).toLowerCase();
  const defaultPort = scheme === "https" ? 443 : scheme === "http" ? 80 : fail("scheme is not http or https");
  const rest = u.slice(colon + 1);
  if (!rest.startsWith("//")) fail("no authority");
  const after = rest.slice(2);
  const slash = after.indexOf("/");
  const authority = slash < 0 ? after : after.slice(0, slash);
  const path = slash < 0 ? "" : after.slice(slash);
  if (authority.includes("@")) fail("userinfo is not allowed");
  let host: string;
  let portText: string | undefined;
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0) fail("unterminated IP literal");
    const inside = authority.slice(1, close);
    if (inside.length === 0 || !/^[0-9A-Fa-f:.]+$/.test(inside)) fail("invalid IP literal");
    const tail = authority.slice(close + 1);
    if (tail !== "") {
      if (!tail.startsWith(":")) fail("invalid authority");
      portText = tail.slice(1);
    }
    host = `[${inside.toLowerCase()}]`;
  } else {
    const c = authority.lastIndexOf(":");
    const h = c < 0 ? authority : authority.slice(0, c);
    portText = c < 0 ? undefined : authority.slice(c + 1);
    if (h.length === 0) fail("no host");
    if (!/^[A-Za-z0-9\-._~!$&'()*+,;=]+$/.test(h)) fail("invalid host");
    host = h.toLowerCase();
  }
  let port: number | undefined;
  if (portText !== undefined && portText !== "") {
    if (portText.length > 5 || !/^[0-9]+$/.test(portText)) fail("invalid port");
    port = Number(portText);
    if (port > 65535) fail("invalid port");
  }
  let out = `${scheme}://${host}`;
  if (port !== undefined && port !== defaultPort) out += `:${port}`;
  const p = removeDotSegments(normalizePercent(path, fail));
  return out + (p === "" ? "/" : p);
}

function normalizePercent(path: string, fail: (why: string) => never): string {
  let out = "";
  for (let i = 0; i < path.length; ) {
    const c = path[i] as string;
    if (c === "%") {
      const h = path.slice(i + 1, i + 3);
      if (h.length < 2) fail("truncated percent-encoding");
      if (!/^[0-9A-Fa-f]{2}$/.test(h)) fail("invalid percent-encoding");
      const ch = String.fromCharCode(Number.parseInt(h, 16));
      out += isUnreserved(ch) ? ch : `%${h.toUpperCase()}`;
      i += 3;
    } else {
      if (!(isUnreserved(c) || "!$&'()*+,;=:@/".includes(c))) fail("invalid character in path");
      out += c;
      i++;
    }
  }
  return out;
}

function removeDotSegments(path: string): string {
  const output: string[] = [];
  let input = path;
  while (input.length > 0) {
    if (input.startsWith("../")) input = input.slice(3);
    else if (input.startsWith("./")) input = input.slice(2);
    else if (input.startsWith("/./")) input = input.slice(2);
    else if (input === "/.") input = "/";
    else if (input.startsWith("/../")) {
      input = input.slice(3);
      output.pop();
    } else if (input === "/..") {
      input = "/";
      output.pop();
    } else if (input === "." || input === "..") input = "";
    else {
      const start = input.startsWith("/") ? 1 : 0;
      const next = input.indexOf("/", start);
      const end = next < 0 ? input.length : next;
      output.push(input.slice(0, end));
      input = input.slice(end);
    }
  }
  return output.join("");
}
