// Agent tokens (`typ agent+jwt`): the verification pipeline's steps 1–4 and the policy
// hash (step 7), as the Rust core's `token::verify` and `policy_of`. Revocation and
// suspension (step 5) are the status lists' or the registry's; proofs (step 6) are
// the receiver's.

import { invalid, VerifyError } from "./errors.js";
import { isId } from "./ids.js";
import { DEFAULT_MAX_DEPTH, isObject, type JsonObject, type JsonValue } from "./json.js";
import { ALL_ALGS, JwsError, open } from "./jws.js";
import { type Jwks, KeyError, VerifyingKey } from "./keys.js";
import { Policy, PolicyError } from "./policy/index.js";

/** `typ` of agent tokens. */
export const AGENT_TOKEN_TYP = "agent+jwt";
/** Default cap on token length, bytes. */
export const DEFAULT_MAX_TOKEN_BYTES = 8 * 1024;
/** Default clock-skew leeway, seconds. */
export const DEFAULT_LEEWAY_SECS = 60;
/** Default longest token lifetime accepted offline (the registry's `max_token_ttl`), seconds. */
export const DEFAULT_MAX_LIFETIME_SECS = 30 * 86_400;
/** Deepest `act` nesting a token may carry. */
export const MAX_ACT_DEPTH = 8;

/** The `agent` claim. */
export interface AgentInfo {
  name: string;
  issuer: string;
  scopes: string[];
  description?: string;
}

/** `act` (RFC 8693 §4.1): the current actor outermost, prior actors nested. */
export interface Actor {
  sub: string;
  act?: Actor;
}

/** A token's status list entry. */
export interface StatusRef {
  idx: number;
  uri: string;
}

/** Verified claims of an agent token. */
export interface AgentClaims {
  iss: string;
  sub: string;
  aud?: string | string[];
  iat: number;
  nbf?: number;
  exp: number;
  jti: string;
  agent: AgentInfo;
  scope?: string;
  user?: string;
  policy?: JsonValue;
  policy_hash?: string;
  cnf?: { jkt: string };
  act?: Actor;
  ancestor_jtis?: string[];
  status?: { status_list?: StatusRef };
  /** Every claim as sent, unknown ones included. */
  raw: JsonObject;
}

/** Key sets by `kid`. */
export class KeySet {
  private readonly keys = new Map<string, VerifyingKey>();

  /** A set built from a JWKS, refused whole if any key is unusable. */
  static async fromJwks(jwks: Jwks): Promise<KeySet> {
    if (!isObject(jwks as unknown) || !Array.isArray(jwks.keys)) throw new KeyError("not a JWK Set (`keys` array)");
    const set = new KeySet();
    for (const jwk of jwks.keys) set.insert(await VerifyingKey.fromJwk(jwk));
    return set;
  }

  insert(key: VerifyingKey): void {
    this.keys.set(key.kid, key);
  }

  get(kid: string): VerifyingKey | undefined {
    return this.keys.get(kid);
  }

  get size(): number {
    return this.keys.size;
  }
}

/** Who the verifier is, for `aud`: a token with `aud` must name one of these. */
export type AudienceRule = { kind: "unnamed" } | { kind: "any_of"; names: string[] } | { kind: "unchecked" };

/** Verification settings. */
export interface VerifyOptions {
  /** Accepted `iss` values (the registry's URL). */
  issuers: string[];
  /** This verifier's audience names (none: a token with `aud` is refused). */
  audience?: string | string[] | undefined;
  leewaySecs?: number;
  maxTokenBytes?: number;
  /** Longest lifetime (`exp` − `iat`) accepted. Default 30 days. */
  maxLifetimeSecs?: number;
  /** Deepest JSON nesting of header and claims (the claims object counts as 1). Default 16. */
  maxJsonDepth?: number;
  /** Skip the time checks (only to identify a genuine token). */
  skipTimes?: boolean;
}

const RULES = { typ: { expected: AGENT_TOKEN_TYP }, keyFrom: "kid" as const, algs: ALL_ALGS };

/** The `TOKEN_INVALID` etc. reading of a JWS error. */
export function tokenErrorOf(e: unknown): VerifyError {
  if (e instanceof VerifyError) return e;
  if (e instanceof JwsError) {
    if (e.kind === "unknown_key" || e.kind === "bad_kid") return invalid("no key with this `kid`");
    return invalid(`token ${e.message.replace(/^JWS /, "")}`);
  }
  if (e instanceof Error) return invalid(e.message);
  return invalid(String(e));
}

/** Thrown by the key lookup for a `kid` the set does not hold. */
export class UnknownKid extends VerifyError {
  constructor(readonly kid: string) {
    super("TOKEN_INVALID", "no key with this `kid`");
    this.name = "UnknownKid";
  }
}

/** Steps 1–4: verifies an agent token with `keys`; throws {@link VerifyError} (or {@link UnknownKid}). */
export async function verifyToken(token: string, keys: KeySet, opts: VerifyOptions, nowSecs: number): Promise<AgentClaims> {
  let claims: JsonObject;
  try {
    const opened = await open(token, { ...RULES, maxBytes: opts.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES, maxDepth: opts.maxJsonDepth ?? DEFAULT_MAX_DEPTH }, (h) => {
      const key = keys.get(h.kid);
      if (!key) throw new UnknownKid(h.kid);
      return key;
    });
    claims = opened.claims;
  } catch (e) {
    if (e instanceof UnknownKid) throw e;
    throw tokenErrorOf(e);
  }
  const c = readClaims(claims);
  checkConsistent(c);
  const leeway = opts.leewaySecs ?? DEFAULT_LEEWAY_SECS;
  if (!opts.skipTimes) checkTimes(c, leeway, nowSecs);
  const max = opts.maxLifetimeSecs ?? DEFAULT_MAX_LIFETIME_SECS;
  const lifetime = c.exp - c.iat;
  if (lifetime > max) {
    throw invalid(
      `the token's lifetime (\`exp\` − \`iat\`) of ${lifetime} s is over this verifier's maximum of ${max} s (max_token_ttl)`,
    );
  }
  checkAudience(c.aud, opts.audience);
  if (!opts.issuers.includes(c.iss)) {
    throw new VerifyError("ISSUER_UNKNOWN", `issuer \`${[...c.iss].slice(0, 128).join("")}\` is not known`);
  }
  return c;
}

/** The policy a token carries, checked against its `policy_hash` (step 7); `undefined` without one. */
export async function policyOf(c: AgentClaims): Promise<Policy | undefined> {
  if (c.policy === undefined || c.policy_hash === undefined) return undefined;
  let policy: Policy;
  try {
    policy = await Policy.fromValue(c.policy);
  } catch (e) {
    if (e instanceof PolicyError) throw invalid(`token claims are invalid: \`policy\` is invalid: ${e.message}`);
    throw e;
  }
  if (!policy.hashMatches(c.policy_hash)) throw invalid("token claims are invalid: `policy_hash` does not match `policy`");
  return policy;
}

function checkTimes(c: AgentClaims, leeway: number, now: number): void {
  if (now - leeway >= c.exp) throw new VerifyError("TOKEN_EXPIRED", `token expired at ${c.exp}`);
  if (c.nbf !== undefined && now + leeway < c.nbf) {
    throw new VerifyError("TOKEN_NOT_YET_VALID", `token is not valid before ${c.nbf}`);
  }
  if (now + leeway < c.iat) throw new VerifyError("TOKEN_NOT_YET_VALID", `token is not valid before ${c.iat}`);
}

function checkAudience(aud: string | string[] | undefined, mine: string | string[] | undefined): void {
  if (aud === undefined) return;
  const names = mine === undefined ? [] : Array.isArray(mine) ? mine : [mine];
  if (names.length === 0) {
    throw new VerifyError(
      "AUDIENCE_MISMATCH",
      "the token is for named audiences (`aud`): the verifier must name one of them (`audience`)",
    );
  }
  const list = Array.isArray(aud) ? aud : [aud];
  if (!names.some((n) => list.includes(n))) {
    throw new VerifyError("AUDIENCE_MISMATCH", `token is not intended for audience \`${names.join(", ").slice(0, 128)}\``);
  }
}

// ---- claims, read as strictly as serde reads `AgentClaims` ----------------------

const bad = (m: string) => invalid(`token claims are invalid: ${m}`);

function int(v: JsonValue | undefined, name: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v)) {
    throw bad(v === undefined ? `missing field \`${name}\`` : `\`${name}\` is not an integer`);
  }
  return v;
}

function optInt(o: JsonObject, name: string): number | undefined {
  const v = o[name];
  return v === undefined || v === null ? undefined : int(v, name);
}

function string(v: JsonValue | undefined, name: string): string {
  if (typeof v !== "string") throw bad(v === undefined ? `missing field \`${name}\`` : `\`${name}\` is not a string`);
  return v;
}

function optString(o: JsonObject, name: string): string | undefined {
  const v = o[name];
  return v === undefined || v === null ? undefined : string(v, name);
}

function strings(v: JsonValue | undefined, name: string): string[] {
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw bad(`\`${name}\` is not a list of strings`);
  return v as string[];
}

function readActor(v: JsonValue, depth: number): Actor {
  if (!isObject(v)) throw bad("`act` is not an object");
  if (depth > MAX_ACT_DEPTH + 1) throw bad("`act` is nested too deep");
  for (const k of Object.keys(v)) if (k !== "sub" && k !== "act") throw bad(`unknown field \`${k.slice(0, 32)}\` in \`act\``);
  const sub = v.sub;
  if (!isId(sub, "agt_")) throw bad("`act.sub` is not an agent id");
  const out: Actor = { sub };
  if (v.act !== undefined && v.act !== null) out.act = readActor(v.act, depth + 1);
  return out;
}

/** Reads claims into the agent-token shape (types, ids), or throws `TOKEN_INVALID`. */
export function readClaims(o: JsonObject): AgentClaims {
  const iss = string(o.iss, "iss");
  const sub = o.sub;
  if (!isId(sub, "agt_")) throw bad(sub === undefined ? "missing field `sub`" : "`sub` is not a valid agent id");
  const iat = int(o.iat, "iat");
  const exp = int(o.exp, "exp");
  const jti = o.jti;
  if (!isId(jti, "tok_")) throw bad(jti === undefined ? "missing field `jti`" : "`jti` is not a valid token id");
  const a = o.agent;
  if (!isObject(a)) throw bad(a === undefined ? "missing field `agent`" : "`agent` is not an object");
  const agent: AgentInfo = {
    name: string(a.name, "agent.name"),
    issuer: string(a.issuer, "agent.issuer"),
    scopes: strings(a.scopes, "agent.scopes"),
  };
  const description = optString(a, "description");
  if (description !== undefined) agent.description = description;
  const c: AgentClaims = { iss, sub, iat, exp, jti, agent, raw: o };
  const aud = o.aud;
  if (aud !== undefined && aud !== null) {
    if (typeof aud === "string") c.aud = aud;
    else c.aud = strings(aud, "aud");
  }
  const nbf = optInt(o, "nbf");
  if (nbf !== undefined) c.nbf = nbf;
  const scope = optString(o, "scope");
  if (scope !== undefined) c.scope = scope;
  const user = optString(o, "user");
  if (user !== undefined) c.user = user;
  if (o.policy !== undefined && o.policy !== null) c.policy = o.policy;
  const ph = optString(o, "policy_hash");
  if (ph !== undefined) c.policy_hash = ph;
  const cnf = o.cnf;
  if (cnf !== undefined && cnf !== null) {
    if (!isObject(cnf)) throw bad("`cnf` is not an object");
    c.cnf = { jkt: string(cnf.jkt, "cnf.jkt") };
  }
  if (o.act !== undefined && o.act !== null) c.act = readActor(o.act, 1);
  const anc = o.ancestor_jtis;
  if (anc !== undefined && anc !== null) {
    if (!Array.isArray(anc) || !anc.every((j) => isId(j, "tok_"))) throw bad("`ancestor_jtis` is not a list of token ids");
    c.ancestor_jtis = anc as string[];
  }
  const st = o.status;
  if (st !== undefined && st !== null) {
    if (!isObject(st)) throw bad("`status` is not an object");
    const list = st.status_list;
    c.status = {};
    if (list !== undefined && list !== null) {
      if (!isObject(list)) throw bad("`status.status_list` is not an object");
      const idx = list.idx;
      if (typeof idx !== "number" || !Number.isSafeInteger(idx) || idx < 0) {
        throw bad("`status.status_list.idx` is not a non-negative integer");
      }
      c.status.status_list = { idx, uri: string(list.uri, "status.status_list.uri") };
    }
  }
  return c;
}

function actors(act: Actor | undefined): Actor[] {
  const out: Actor[] = [];
  for (let a = act; a; a = a.act) out.push(a);
  return out;
}

function checkConsistent(c: AgentClaims): void {
  if (c.scope !== undefined) {
    const listed = c.scope.split(" ").filter((s) => s !== "");
    const same = listed.every((s) => c.agent.scopes.includes(s)) && c.agent.scopes.every((g) => listed.includes(g));
    if (!same) throw bad("`scope` does not match `agent.scopes`");
  }
  if (c.exp <= c.iat) throw bad("`exp` is not after `iat`");
  if (c.policy !== undefined && c.policy_hash === undefined) throw bad("`policy` without `policy_hash`");
  if (c.policy === undefined && c.policy_hash !== undefined) throw bad("`policy_hash` without `policy`");
  if (!c.act && !c.ancestor_jtis) return;
  if (c.act && !c.ancestor_jtis) throw bad("`act` without `ancestor_jtis`");
  if (!c.act && c.ancestor_jtis) throw bad("`ancestor_jtis` without `act`");
  const chain = actors(c.act);
  if (chain.length > MAX_ACT_DEPTH) throw bad("`act` is nested too deep");
  if ((c.ancestor_jtis as string[]).length !== chain.length) {
    throw bad("`ancestor_jtis` does not have one entry per `act` level");
  }
  const agents = [c.sub, ...chain.map((a) => a.sub)];
  if (new Set(agents).size !== agents.length) throw bad("`act` names an agent twice in the delegation chain");
  const tokens = [c.jti, ...(c.ancestor_jtis as string[])];
  if (new Set(tokens).size !== tokens.length) throw bad("`ancestor_jtis` names a token twice");
}

/** The agent presenting the token: the outermost actor, else `sub`. */
export function currentActor(c: AgentClaims): string {
  return c.act?.sub ?? c.sub;
}

/** The delegation chain, root first: `sub`, then each actor up to the current one. */
export function delegationChain(c: AgentClaims): string[] {
  return [c.sub, ...actors(c.act).map((a) => a.sub).reverse()];
}
