// Decision receipts of `POST /v1/verify` (`typ receipt+jwt`): verified offline with
// the registry's receipt keys (`/.well-known/receipt-jwks.json`, never the token
// JWKS), and bound to the verify request they decided (`request_sha256`: SHA-256 of
// the RFC 8785 form of its decision-relevant members), as the Rust core's `receipt`.

import { canonicalize, isObject, type JsonObject, type JsonValue, parse } from "./json.js";
import { ALL_ALGS, JwsError, open } from "./jws.js";
import { hex, sha256 } from "./keys.js";
import { isId } from "./ids.js";
import { minorUnits, moneyFromJson } from "./policy/money.js";
import type { KeySet } from "./token.js";

export const RECEIPT_TYP = "receipt+jwt";
export const MAX_RECEIPT_BYTES = 16 * 1024;

/** A receipt that does not verify, or a request it was not made for. */
export class ReceiptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ReceiptError";
  }
}

/** The claims of a verified receipt. */
export interface ReceiptClaims {
  iss: string;
  iat: number;
  sub: string;
  receipt_id: string;
  decision: "allow" | "deny";
  valid: boolean;
  reasons: string[];
  token_sha256: string;
  agent_id?: string;
  jti?: string;
  policy_hash?: string;
  request_sha256: string;
  verified_at: string;
  remaining?: { amount: string; currency: string; period: string; period_ends: string };
  audit_index?: number;
  receiver?: string;
}

const MEMBERS = [
  "iss",
  "iat",
  "sub",
  "receipt_id",
  "decision",
  "valid",
  "reasons",
  "token_sha256",
  "agent_id",
  "jti",
  "policy_hash",
  "request_sha256",
  "verified_at",
  "remaining",
  "audit_index",
  "receiver",
];
const isHex64 = (s: unknown) => typeof s === "string" && /^[0-9a-f]{64}$/.test(s);
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function claimsOf(c: JsonObject): ReceiptClaims {
  const bad = (m: string) => new ReceiptError(`receipt claims are invalid: ${m}`);
  for (const k of Object.keys(c)) if (!MEMBERS.includes(k)) throw bad(`unknown field \`${k.slice(0, 64)}\``);
  const str = (k: string) => {
    if (typeof c[k] !== "string") throw bad(`\`${k}\` is missing or not a string`);
    return c[k] as string;
  };
  const opt = (k: string) => c[k] === undefined || c[k] === null;
  if (typeof c.iat !== "number" || !Number.isSafeInteger(c.iat)) throw bad("`iat` is missing or not an integer");
  if (!isId(c.sub, "rcp_") || !isId(c.receipt_id, "rcp_")) throw bad("`sub` and `receipt_id` must be receipt ids");
  if (c.decision !== "allow" && c.decision !== "deny") throw bad("`decision` must be allow or deny");
  if (typeof c.valid !== "boolean") throw bad("`valid` is missing or not a boolean");
  if (!Array.isArray(c.reasons) || !c.reasons.every((r) => typeof r === "string")) throw bad("`reasons` is not a list of strings");
  if (!opt("agent_id") && !isId(c.agent_id, "agt_")) throw bad("`agent_id` is not an agent id");
  if (!opt("jti") && !isId(c.jti, "tok_")) throw bad("`jti` is not a token id");
  if (!opt("receiver") && !isId(c.receiver, "rcv_")) throw bad("`receiver` is not a receiver id");
  if (!opt("policy_hash") && typeof c.policy_hash !== "string") throw bad("`policy_hash` is not a string");
  if (!opt("audit_index") && (typeof c.audit_index !== "number" || !Number.isSafeInteger(c.audit_index) || c.audit_index < 0)) {
    throw bad("`audit_index` is not a non-negative integer");
  }
  if (!opt("remaining")) {
    const r = c.remaining;
    if (!isObject(r)) throw bad("`remaining` is not an object");
    for (const k of Object.keys(r)) if (!["amount", "currency", "period", "period_ends"].includes(k)) throw bad(`unknown field \`remaining.${k}\``);
    for (const k of ["amount", "currency", "period", "period_ends"]) if (typeof r[k] !== "string") throw bad(`\`remaining.${k}\` is not a string`);
  }
  const claims = JSON.parse(JSON.stringify(c)) as ReceiptClaims;
  str("iss");
  str("token_sha256");
  str("request_sha256");
  str("verified_at");
  if (claims.sub !== claims.receipt_id) throw bad("`sub` is not the receipt's own `receipt_id`");
  if (!isHex64(claims.token_sha256)) throw bad("`token_sha256` is not 64 lowercase hex digits");
  if (!isHex64(claims.request_sha256)) throw bad("`request_sha256` is not 64 lowercase hex digits");
  if (claims.policy_hash !== undefined && !(claims.policy_hash.startsWith("sha256:") && isHex64(claims.policy_hash.slice(7)))) {
    throw bad("`policy_hash` is not `sha256:` and 64 lowercase hex digits");
  }
  if (!RFC3339.test(claims.verified_at) || Number.isNaN(Date.parse(claims.verified_at))) throw bad("`verified_at` is not an RFC 3339 time");
  if (claims.decision === "allow" && !claims.valid) throw bad("`decision` is allow but `valid` is false");
  return claims;
}

/** Verifies a receipt JWS with the receipt key set. */
export async function verifyReceipt(jws: string, keys: KeySet): Promise<ReceiptClaims> {
  let claims: JsonObject;
  try {
    const opened = await open(jws, { typ: { expected: RECEIPT_TYP }, keyFrom: "kid", algs: ALL_ALGS, maxBytes: MAX_RECEIPT_BYTES }, (h) => {
      const k = keys.get(h.kid);
      if (!k) throw new JwsError("unknown_key", "no key with this `kid`");
      return k;
    });
    claims = opened.claims;
  } catch (e) {
    if (e instanceof JwsError) {
      if (e.kind === "wrong_type") throw new ReceiptError(`not a receipt: its type is \`${e.detail ?? ""}\`, not \`receipt+jwt\``);
      throw new ReceiptError(`receipt does not verify: ${e.message}`);
    }
    throw e;
  }
  return claimsOf(claims);
}

const REQUEST_MEMBERS = ["token", "proof", "audience", "target_resource", "scopes_requested", "action", "resource", "amount", "currency", "idempotency_key"];

/** The RFC 8785 form of a verify request's decision-relevant members, as a receipt binds it. */
export function requestCanonical(requestJson: string): string {
  const bad = (m: string) => new ReceiptError(`invalid verify request: ${m}`);
  let doc: JsonValue;
  try {
    doc = parse(requestJson);
  } catch (e) {
    throw bad((e as Error).message);
  }
  if (!isObject(doc)) throw bad("a verify request is a JSON object");
  const out: Record<string, JsonValue> = {};
  let target: string | undefined;
  let amount: JsonValue | undefined;
  let currency: JsonValue | undefined;
  const s = (k: string, v: JsonValue) => {
    if (typeof v !== "string") throw bad(`\`${k}\` must be a string`);
    return v;
  };
  for (const [k, v] of Object.entries(doc)) {
    if (!REQUEST_MEMBERS.includes(k)) throw bad(`unknown member \`${k.slice(0, 64)}\` (expected one of ${REQUEST_MEMBERS.join(", ")})`);
    if (v === null) continue;
    switch (k) {
      case "audience":
      case "action":
      case "idempotency_key":
        out[k] = s(k, v);
        break;
      case "target_resource":
        target = s(k, v);
        break;
      case "scopes_requested": {
        if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw bad("`scopes_requested` must be an array of strings");
        const sorted = [...new Set(v as string[])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        if (sorted.length > 0) out.scopes_requested = sorted;
        break;
      }
      case "resource": {
        if (!isObject(v)) throw bad("`resource` must be an object `{type, id}`");
        const other = Object.keys(v).find((x) => x !== "type" && x !== "id");
        if (other) throw bad(`unknown member \`resource.${other.slice(0, 64)}\` (expected type, id)`);
        if (v.type === undefined) throw bad("`resource.type` is missing");
        if (v.id === undefined) throw bad("`resource.id` is missing");
        out.resource = { type: s("resource.type", v.type as JsonValue), id: s("resource.id", v.id as JsonValue) };
        break;
      }
      case "amount":
        amount = v;
        break;
      case "currency":
        currency = v;
        break;
    }
  }
  if (out.audience === undefined && target !== undefined) out.audience = target;
  if (amount !== undefined && currency !== undefined) {
    let m: ReturnType<typeof moneyFromJson>;
    try {
      m = moneyFromJson(amount, currency);
    } catch (e) {
      throw bad((e as Error).message);
    }
    let d = m.amount.normalize();
    const minor = minorUnits(m.currency);
    if (d.scale < minor) d = d.rescale(minor);
    out.amount = d.toString();
    out.currency = m.currency;
  } else if (amount !== undefined) throw bad("`amount` needs a `currency`");
  else if (currency !== undefined) throw bad("`currency` needs an `amount`");
  return canonicalize(out);
}

/** The `request_sha256` of a verify request. */
export async function requestSha256(requestJson: string): Promise<string> {
  return hex(await sha256(requestCanonical(requestJson)));
}

/** Throws unless the receipt was issued for this verify request. */
export async function checkReceiptRequest(claims: ReceiptClaims, requestJson: string): Promise<void> {
  const found = await requestSha256(requestJson);
  if (claims.request_sha256 !== found) {
    throw new ReceiptError(`the receipt is for another request: it names request_sha256 ${claims.request_sha256.slice(0, 64)}, this request is ${found}`);
  }
}
