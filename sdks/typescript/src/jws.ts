// JWS Compact Serialization (RFC 7515 §7.1), hardened per RFC 8725: the one verify
// sequence of every Bonafide JWS (agent tokens, DPoP proofs, status lists, receipts),
// in the Rust core's order, the first failure deciding:
// 1. size, then shape (three segments, non-empty header and payload);
// 2. the protected header: strict base64url and JSON, string `alg`/`typ`/`kid`, no
//    `crit`, none of the forbidden key-carrying members, a supported `alg`, a `kid`
//    (unless the key is embedded, DPoP), then the kind's allow-list and `typ`;
// 3. the key, chosen by the caller from the header, and its algorithm equal to `alg`;
// 4. the signature, before anything in the payload is read;
// 5. the claims: strict JSON, an object.

import * as b64 from "./b64.js";
import { isObject, type JsonObject, JsonError, parseBytes, DEFAULT_MAX_DEPTH } from "./json.js";
import { type Algorithm, ALL_ALGS, checkPublic, type Jwk, KeyError, parseAlgorithm, type VerifyingKey } from "./keys.js";

/** Header members no Bonafide JWS may carry (DPoP's `jwk` is the one named exception). */
export const FORBIDDEN_HEADERS = ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "b64"] as const;
/** Longest `kid` accepted. */
export const MAX_KID_LEN = 128;

/** What went wrong opening a JWS; `kind` is stable, `message` for people. */
export type JwsErrorKind =
  | "too_large"
  | "shape"
  | "base64"
  | "json"
  | "header_not_object"
  | "missing_header"
  | "critical_header"
  | "forbidden_header"
  | "algorithm_not_allowed"
  | "bad_kid"
  | "wrong_type"
  | "malformed_jwk"
  | "jwk"
  | "unknown_key"
  | "algorithm_key_mismatch"
  | "bad_signature"
  | "claims_not_object";

/** Why a JWS could not be opened. */
export class JwsError extends Error {
  constructor(
    readonly kind: JwsErrorKind,
    message: string,
    readonly detail?: string,
  ) {
    super(message);
    this.name = "JwsError";
  }
}

/** The `typ` a kind carries: exactly, or (consent tokens) exactly or absent. */
export interface TypRule {
  expected: string;
  orAbsent?: boolean;
}

/** What differs between kinds of JWS. */
export interface Rules {
  typ: TypRule;
  /** `kid`: the verifier chooses by `kid`; `embedded`: the header's `jwk` (DPoP). */
  keyFrom: "kid" | "embedded";
  algs: readonly Algorithm[];
  maxBytes: number;
  maxDepth?: number;
}

/** A checked protected header. */
export interface Protected {
  alg: Algorithm;
  kid: string;
  typ: string | undefined;
  jwk: Jwk | undefined;
}

/** The parts of a compact JWS. */
export interface Compact {
  header: string;
  payload: string;
  signature: string;
  signingInput: string;
}

/** Splits a JWS into three segments after the size cap. */
export function split(jws: string, maxBytes: number): Compact {
  const size = utf8Length(jws);
  if (size > maxBytes) throw new JwsError("too_large", `JWS is ${size} bytes, more than the ${maxBytes} allowed`);
  const a = jws.indexOf(".");
  const b = a < 0 ? -1 : jws.indexOf(".", a + 1);
  if (a <= 0 || b < 0 || b === a + 1 || jws.indexOf(".", b + 1) >= 0) {
    throw new JwsError("shape", "not a compact JWS (three base64url segments separated by dots)");
  }
  return {
    header: jws.slice(0, a),
    payload: jws.slice(a + 1, b),
    signature: jws.slice(b + 1),
    signingInput: jws.slice(0, b),
  };
}

function utf8Length(s: string): number {
  // Fast path: ASCII (every genuine token).
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) {
      n = new TextEncoder().encode(s).length;
      break;
    }
  }
  return n;
}

/** True if `typ` names `expected`: case-insensitive, `application/` optional (RFC 7515 §4.1.9). */
export function typMatches(typ: string | undefined, expected: string): boolean {
  if (typ === undefined) return false;
  const bare = typ.length >= 12 && typ.slice(0, 12).toLowerCase() === "application/" ? typ.slice(12) : typ;
  return bare.toLowerCase() === expected.toLowerCase();
}

function segment(text: string, which: "header" | "payload" | "signature"): Uint8Array {
  try {
    return b64.decode(text);
  } catch {
    throw new JwsError("base64", `JWS ${which} is not strict base64url`);
  }
}

function json(bytes: Uint8Array, which: "header" | "payload", maxDepth: number): unknown {
  try {
    return parseBytes(bytes, maxDepth);
  } catch (e) {
    if (e instanceof JsonError) throw new JwsError("json", `JWS ${which} JSON is invalid: ${e.message}`, e.kind);
    throw e;
  }
}

function stringMember(h: JsonObject, name: string): string | undefined {
  const v = h[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new JwsError("header_not_object", "JWS header is not a valid JOSE header");
  return v;
}

/** Step 2: decodes and checks the protected header against `rules`. */
export function checkHeader(headerB64: string, rules: Rules): Protected {
  const raw = json(segment(headerB64, "header"), "header", rules.maxDepth ?? DEFAULT_MAX_DEPTH);
  if (!isObject(raw)) throw new JwsError("header_not_object", "JWS header is not a valid JOSE header");
  const algText = stringMember(raw, "alg");
  const typ = stringMember(raw, "typ");
  const kidText = rules.keyFrom === "kid" ? stringMember(raw, "kid") : undefined;
  if (Object.hasOwn(raw, "crit")) throw new JwsError("critical_header", "`crit` header parameter is not supported");
  for (const name of FORBIDDEN_HEADERS) {
    if (Object.hasOwn(raw, name) && !(rules.keyFrom === "embedded" && name === "jwk")) {
      throw new JwsError("forbidden_header", `header parameter \`${name}\` is not accepted`, name);
    }
  }
  if (algText === undefined) throw new JwsError("missing_header", "JWS header has no `alg`", "alg");
  const alg = parseAlgorithm(algText);
  if (!alg) throw new JwsError("algorithm_not_allowed", `algorithm \`${algText.slice(0, 32)}\` is not allowed`);
  let kid = "";
  if (rules.keyFrom === "kid") {
    if (kidText === undefined) throw new JwsError("missing_header", "JWS header has no `kid`", "kid");
    if (kidText.length === 0 || utf8Length(kidText) > MAX_KID_LEN) throw new JwsError("bad_kid", "`kid` names no key");
    kid = kidText;
  }
  if (!rules.algs.includes(alg)) throw new JwsError("algorithm_not_allowed", `algorithm \`${alg}\` is not allowed`);
  const typOk = typ === undefined ? rules.typ.orAbsent === true : typMatches(typ, rules.typ.expected);
  if (!typOk) {
    throw new JwsError(
      "wrong_type",
      `type \`${(typ ?? "").slice(0, 64)}\` is not \`${rules.typ.expected}\``,
      typ === undefined ? undefined : typ.slice(0, 64),
    );
  }
  let jwk: Jwk | undefined;
  if (rules.keyFrom === "embedded") {
    const v = raw.jwk;
    if (v === undefined || v === null) throw new JwsError("missing_header", "JWS header has no `jwk`", "jwk");
    if (!isObject(v) || typeof v.kty !== "string") throw new JwsError("malformed_jwk", "`jwk` is not a JWK object");
    try {
      checkPublic(v);
    } catch (e) {
      throw new JwsError("jwk", `\`jwk\` is not usable: ${(e as Error).message}`);
    }
    jwk = v as unknown as Jwk;
  }
  return { alg, kid, typ, jwk };
}

/** An opened JWS: its header, the key that verified it and its claims. */
export interface Opened {
  header: Protected;
  key: VerifyingKey;
  claims: JsonObject;
}

/** Gets the key for a checked header; throws (its own error, or JwsError) when there is none. */
export type KeyLookup = (header: Protected) => VerifyingKey | Promise<VerifyingKey>;

/** Cache of headers already checked, by their exact base64url text (Bonafide writes few). */
const headerCache = new Map<string, Protected>();
const HEADER_CACHE_MAX = 1024;

/** Opens a compact JWS of the kind `rules` describes with the key `lookup` chooses. */
export async function open(jws: string, rules: Rules, lookup: KeyLookup): Promise<Opened> {
  const compact = split(jws, rules.maxBytes);
  // A header seen before (same bytes, same rules) passed the same checks: its result
  // is reused (a registry writes few headers; an agent's DPoP header is the same for
  // every proof it makes with one key). The cache is bounded and emptied when full.
  const cacheKey = `${rules.keyFrom}|${rules.typ.expected}|${rules.typ.orAbsent ? 1 : 0}|${rules.algs.join(",")}|${rules.maxDepth ?? DEFAULT_MAX_DEPTH}|${compact.header}`;
  let header = cacheKey ? headerCache.get(cacheKey) : undefined;
  if (!header) {
    header = checkHeader(compact.header, rules);
    if (cacheKey) {
      if (headerCache.size >= HEADER_CACHE_MAX) headerCache.clear();
      headerCache.set(cacheKey, header);
    }
  }
  const key = await lookup(header);
  if (key.alg !== header.alg) {
    throw new JwsError("algorithm_key_mismatch", `algorithm \`${header.alg}\` does not match the key's algorithm \`${key.alg}\``);
  }
  const sig = segment(compact.signature, "signature");
  if (!(await key.verify(new TextEncoder().encode(compact.signingInput), sig))) {
    throw new JwsError("bad_signature", "signature does not verify");
  }
  const claims = json(segment(compact.payload, "payload"), "payload", rules.maxDepth ?? DEFAULT_MAX_DEPTH);
  if (!isObject(claims)) throw new JwsError("claims_not_object", "claims are not a JSON object");
  return { header, key, claims };
}

/** The default allow-list. */
export { ALL_ALGS, KeyError };
