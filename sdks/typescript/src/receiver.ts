// The receiver: authenticates one agent request, offline (cached JWKS, status lists,
// proofs checked here with a bounded replay cache) or online (`POST /v1/verify`, the
// registry's verdict). The same steps and refusals as the Rust receiver layer
// (`crates/client`): the one token of the request (`X-Agent-Token`, else
// `Authorization: DPoP|Bearer`), steps 1–4 and the policy hash, the status list
// (step 5, before the proof so a revoked token does not use up its proof), the proof
// for a bound token (step 6): DPoP (`htm`, `htu` = public base URL + path, `ath`,
// thumbprint) or an HTTP message signature (Web Bot Auth, `keyid` = `cnf.jkt`, nonce
// required, the key from the registry's agent key directory). A bound token sent as a
// bearer token is refused (RFC 9449 §7.1).

import { ApiError, type RegistryClient, type VerifyProof, type VerifyResponse } from "./client.js";
import { RegistryClient as Client } from "./client.js";
import { DpopError, normalizeHtu, verifyProof } from "./dpop.js";
import { VerifyError } from "./errors.js";
import { FetchError, loadJwks } from "./http.js";
import { DIRECTORY_PATH, HttpSigError, verifySignature } from "./httpsig.js";
import { isId } from "./ids.js";
import { type Jwk, type Jwks, thumbprint, VerifyingKey } from "./keys.js";
import type { Decision, Policy, PolicyRequest } from "./policy/index.js";
import type { Decimal } from "./policy/money.js";
import { ReplayCache, DEFAULT_REPLAY_CAPACITY } from "./replay.js";
import { type StatusCheck, StatusError, type StatusListConfig, StatusLists, registryLists } from "./statuslist.js";
import {
  type AgentClaims,
  currentActor,
  DEFAULT_LEEWAY_SECS,
  DEFAULT_MAX_LIFETIME_SECS,
  DEFAULT_MAX_TOKEN_BYTES,
  delegationChain,
  KeySet,
  policyOf,
  UnknownKid,
  verifyToken,
} from "./token.js";

/** `algs` of the DPoP challenge. */
export const DPOP_ALGS = "EdDSA ES256 RS256";

/** Which proofs are accepted. */
export interface ProofPolicy {
  dpop: boolean;
  httpSignature: boolean;
  /** Refuse bearer tokens (tokens without `cnf`): an offline receiver cannot know an agent has a key. */
  requireBinding: boolean;
}

/** Where agents' public keys come from, for message signatures. */
export type AgentKeySource =
  | { kind: "none" }
  | { kind: "registry"; registryUrl: string; ttlMs?: number }
  | { kind: "resolver"; resolve: (agentId: string, jkt: string) => Promise<Jwk | undefined> | Jwk | undefined };

/** How a receiver verifies. */
export interface ReceiverConfig {
  /** The registry's base URL (`https://registry.example`). */
  registryUrl: string;
  /** `online`: ask the registry for every request (`POST /v1/verify`); `offline` (default): verify here. */
  mode?: "offline" | "online";
  /** Online: the receiver's API key (`bfk_rcv_…`), recorded as the actor (needed to spend). */
  apiKey?: string;
  /** Offline: a JWKS URL (default: the registry's `/.well-known/jwks.json`) or a fixed JWK Set. */
  jwks?: string | Jwks;
  /** Accepted `iss` values. Default: the registry URL. */
  issuers?: string[];
  /** This receiver's audience names: a token with `aud` must name one. */
  audience?: string | string[];
  /** The origin agents address (`https://api.example`, a path prefix allowed): what DPoP `htu` and signatures name. */
  publicBaseUrl?: string;
  leewaySecs?: number;
  maxTokenBytes?: number;
  /** Longest token lifetime accepted. Default 30 days. */
  maxTokenTtlSecs?: number;
  proofs?: Partial<ProofPolicy>;
  /** Oldest proof accepted, and how long it is remembered. Default 300. */
  proofMaxAgeSecs?: number;
  replayCapacity?: number;
  /** Default: the registry's agent key directories. */
  agentKeys?: AgentKeySource;
  /** Offline: status lists (default: the registry's, failing closed); `false` skips revocation checks. */
  statusLists?: Partial<StatusListConfig> | false;
  /** JWKS refresh interval, ms. Default 5 minutes. */
  jwksRefreshMs?: number;
  /** Least time between two refetches for an unknown `kid`, ms. Default 10 s. */
  jwksMinRefetchMs?: number;
  /** The clock, Unix ms (tests). */
  now?: () => number;
  fetch?: typeof fetch;
}

/** How the agent proved it holds the bound key. */
export type ProofKind = "dpop" | "http-signature";

/** The agent behind a request, once its token (and proof, if bound) checked out. */
export class VerifiedAgent {
  constructor(
    /** The token's subject: the agent whose authority is used (the root of a delegation). */
    readonly agentId: string,
    /** The agent presenting the token: the current actor, else `agentId`. */
    readonly actor: string,
    readonly name: string,
    /** Offline: the verified `iss`. Online: the registry's name for the agent's issuer. */
    readonly issuer: string,
    readonly scopes: string[],
    readonly user: string | undefined,
    /** The verified claims (offline); `undefined` online. */
    readonly claims: AgentClaims | undefined,
    readonly proof: ProofKind | undefined,
    /** `cnf.jkt` the proof was checked against (offline). */
    readonly boundKey: string | undefined,
    /** The delegation chain, root first. */
    readonly delegation: string[],
    /** True when revocation was checked (online, or a status list within its bound). */
    readonly revocationChecked: boolean,
    readonly statusList: StatusCheck | undefined,
    /** The consent policy the token carries (offline), checked against its hash. */
    readonly policy: Policy | undefined,
    /** Online: the registry's whole answer. */
    readonly answer: VerifyResponse | undefined,
  ) {}

  hasScope(scope: string): boolean {
    return this.scopes.includes(scope);
  }

  /**
   * The token's policy decision for a request, offline, for display or early refusal
   * (`undefined` when the token carries none). Spending is decided only online: the
   * registry holds the budgets, so `spent` is what the caller believes was spent.
   */
  decide(request: PolicyRequest, nowMs: number = Date.now(), spent?: Decimal): Decision | undefined {
    return this.policy?.evaluate(request, nowMs, spent);
  }
}

/** Why a request was refused: an HTTP status, a stable code, a message and a challenge. */
export class Rejection extends Error {
  constructor(
    readonly status: 401 | 503,
    readonly code: string,
    message: string,
    readonly challenge?: string,
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = "Rejection";
  }

  /** `{"error":{"code","message"}}` with `WWW-Authenticate` (401) or `Retry-After` (503). */
  toResponse(): Response {
    return new Response(JSON.stringify(this.body()), { status: this.status, headers: this.headers() });
  }

  body(): { error: { code: string; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }

  headers(): Record<string, string> {
    const h: Record<string, string> = { "content-type": "application/json" };
    if (this.challenge) h["www-authenticate"] = this.challenge;
    if (this.retryAfter !== undefined) h["retry-after"] = String(this.retryAfter);
    return h;
  }
}

type Scheme = "dpop" | "bearer" | "agent-header";

function unauthorized(scheme: Scheme, oauth: string, code: string, message: string): Rejection {
  const challenge = scheme === "dpop" ? `DPoP error="${oauth}", algs="${DPOP_ALGS}"` : `Bearer error="${oauth}"`;
  return new Rejection(401, code, message, challenge);
}

function proofRejection(scheme: Scheme, code: string, message: string): Rejection {
  return unauthorized(scheme, scheme === "dpop" ? "invalid_dpop_proof" : "invalid_token", code, message);
}

function unavailable(code: string, message: string): Rejection {
  return new Rejection(503, code, message, undefined, 1);
}

/** A request as the receiver sees it. Header names lowercase; repeated headers repeated. */
export interface AgentRequest {
  method: string;
  /** The path and query the request was sent to (`/orders?x=1`), or an absolute URL (its path and query are used). */
  url: string;
  headers: [string, string][];
}

/** Header pairs from a `Headers` object (fetch, Hono). */
export function headerPairs(headers: Headers): [string, string][] {
  const out: [string, string][] = [];
  headers.forEach((v, k) => {
    out.push([k.toLowerCase(), v]);
  });
  return out;
}

function all(req: AgentRequest, name: string): string[] {
  return req.headers.filter(([k]) => k === name).map(([, v]) => v);
}

function presented(req: AgentRequest): { token: string; scheme: Scheme } {
  const bad = (m: string) => unauthorized("bearer", "invalid_request", "TOKEN_INVALID", m);
  const one = (name: string): string | undefined => {
    const vs = all(req, name);
    if (vs.length === 0) return undefined;
    if (vs.length > 1) throw bad(`more than one \`${name}\` header`);
    const v = vs[0] as string;
    if (!/^[\x20-\x7e\t]*$/.test(v)) throw bad(`\`${name}\` is not visible ASCII`);
    return v.trim();
  };
  const agentHeader = one("x-agent-token");
  if (agentHeader !== undefined) {
    if (agentHeader === "") throw bad("`X-Agent-Token` is empty");
    return { token: agentHeader, scheme: all(req, "dpop").length > 0 ? "dpop" : "agent-header" };
  }
  const auth = one("authorization");
  if (auth !== undefined) {
    const sp = auth.indexOf(" ");
    const word = (sp < 0 ? auth : auth.slice(0, sp)).toLowerCase();
    const rest = sp < 0 ? "" : auth.slice(sp + 1);
    const scheme: Scheme | undefined = word === "dpop" ? "dpop" : word === "bearer" ? "bearer" : undefined;
    if (scheme) {
      const token = rest.trim();
      if (token === "") throw bad("`Authorization` carries no token");
      return { token, scheme };
    }
  }
  throw new Rejection(
    401,
    "TOKEN_MISSING",
    "no agent token: send `Authorization: DPoP <token>` with a `DPoP` proof, `Authorization: Bearer <token>` or `X-Agent-Token: <token>`",
    `DPoP algs="${DPOP_ALGS}", Bearer`,
  );
}

const MAX_PROOF_KEYS = 10_000;
const MAX_CACHED_AGENTS = 10_000;
const DIRECTORY_MIN_REFETCH_MS = 10_000;

/** Authenticates agent requests. Build one with {@link Receiver.create} and share it. */
export class Receiver {
  private keys: KeySet = new KeySet();
  private jwksFetchedMs = Number.NEGATIVE_INFINITY;
  private jwksLoading: Promise<void> | undefined;
  private readonly replay: ReplayCache;
  private readonly proofKeys = new Map<string, VerifyingKey>();
  private readonly directories = new Map<string, { at: number; keys: Jwk[] }>();
  private readonly directoryLoads = new Map<string, Promise<Jwk[]>>();
  private status: StatusLists | undefined;
  private online: RegistryClient | undefined;
  private readonly base: string | undefined;
  private readonly proofs: ProofPolicy;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => number;
  private readonly jwksUrl: string | undefined;

  private constructor(readonly config: ReceiverConfig) {
    this.fetchImpl = config.fetch ?? globalThis.fetch.bind(globalThis);
    this.now = config.now ?? Date.now;
    this.replay = new ReplayCache(config.replayCapacity ?? DEFAULT_REPLAY_CAPACITY);
    this.proofs = { dpop: true, httpSignature: true, requireBinding: false, ...config.proofs };
    const registry = config.registryUrl.replace(/\/+$/, "");
    this.jwksUrl = typeof config.jwks === "object" ? undefined : (config.jwks ?? `${registry}/.well-known/jwks.json`);
    if (config.publicBaseUrl !== undefined) {
      const trimmed = config.publicBaseUrl.replace(/\/+$/, "");
      if (/[?#]/.test(trimmed)) throw new Error(`publicBaseUrl \`${config.publicBaseUrl}\` has a query or fragment`);
      try {
        normalizeHtu(trimmed);
      } catch (e) {
        throw new Error(`publicBaseUrl \`${config.publicBaseUrl}\`: ${(e as Error).message}`);
      }
      this.base = trimmed;
    }
    if ((config.leewaySecs ?? 0) < 0 || (config.proofMaxAgeSecs ?? 1) <= 0 || (config.maxTokenTtlSecs ?? 1) <= 0) {
      throw new Error("leewaySecs must be ≥ 0, and proofMaxAgeSecs and maxTokenTtlSecs > 0");
    }
  }

  /** Builds a receiver; offline with a JWKS URL it fetches the keys once (an error if that fails). */
  static async create(config: ReceiverConfig): Promise<Receiver> {
    const r = new Receiver(config);
    const registry = config.registryUrl.replace(/\/+$/, "");
    if (config.mode === "online") {
      r.online = new Client(registry, config.apiKey, r.fetchImpl);
      return r;
    }
    if (typeof config.jwks === "object") r.keys = await KeySet.fromJwks(config.jwks);
    else await r.fetchJwks();
    if (config.statusLists !== false) {
      // Default: the lists of the registry the JWKS URL belongs to (none with a fixed JWKS, unless given).
      const given = config.statusLists ?? {};
      const trusted = given.trusted ?? (r.jwksUrl ? [registryLists(registryOfJwks(r.jwksUrl) ?? registry)] : []);
      if (trusted.length > 0) {
        r.status = await StatusLists.create({
          leewaySecs: config.leewaySecs ?? DEFAULT_LEEWAY_SECS,
          fetch: r.fetchImpl,
          ...given,
          trusted,
        });
      }
    }
    return r;
  }

  /** Authenticates one request: the agent, or a {@link Rejection}. */
  async authenticate(req: AgentRequest): Promise<VerifiedAgent> {
    const p = presented(req);
    if (this.online) return this.askRegistry(this.online, p, req);
    const nowMs = this.now();
    const now = Math.floor(nowMs / 1000);
    const claims = await this.verifyClaims(p.token, p.scheme, now);
    let policy: Policy | undefined;
    try {
      policy = await policyOf(claims);
    } catch (e) {
      throw tokenRejection(p.scheme, e);
    }
    let status: StatusCheck | undefined;
    if (this.status) {
      try {
        status = await this.status.check(claims, nowMs);
      } catch (e) {
        if (!(e instanceof StatusError)) throw e;
        if (e.refusal) throw unauthorized(p.scheme, "invalid_token", e.code, e.message);
        throw unavailable(e.code, e.message);
      }
    }
    const proof = await this.checkProof(p.token, p.scheme, claims, req, now);
    return new VerifiedAgent(
      claims.sub,
      currentActor(claims),
      claims.agent.name,
      claims.iss,
      claims.agent.scopes,
      claims.user,
      claims,
      proof,
      claims.cnf?.jkt,
      delegationChain(claims),
      status?.kind === "valid",
      status,
      policy,
      undefined,
    );
  }

  private async verifyClaims(token: string, scheme: Scheme, now: number): Promise<AgentClaims> {
    const c = this.config;
    const opts = {
      issuers: c.issuers ?? [c.registryUrl.replace(/\/+$/, "")],
      audience: c.audience,
      leewaySecs: c.leewaySecs ?? DEFAULT_LEEWAY_SECS,
      maxTokenBytes: c.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES,
      maxLifetimeSecs: c.maxTokenTtlSecs ?? DEFAULT_MAX_LIFETIME_SECS,
    };
    if (this.jwksUrl && this.now() - this.jwksFetchedMs >= (c.jwksRefreshMs ?? 300_000)) {
      // In the background: a failed refresh keeps the old keys.
      this.fetchJwks().catch(() => {});
    }
    try {
      return await verifyToken(token, this.keys, opts, now);
    } catch (e) {
      if (e instanceof UnknownKid && this.jwksUrl) {
        await this.refetchForUnknownKid();
        try {
          return await verifyToken(token, this.keys, opts, now);
        } catch (e2) {
          throw tokenRejection(scheme, e2);
        }
      }
      throw tokenRejection(scheme, e);
    }
  }

  private fetchJwks(): Promise<void> {
    if (this.jwksLoading) return this.jwksLoading;
    const url = this.jwksUrl;
    if (!url) return Promise.resolve();
    this.jwksFetchedMs = this.now();
    this.jwksLoading = (async () => {
      try {
        this.keys = await KeySet.fromJwks(await loadJwks(this.fetchImpl, url));
      } finally {
        this.jwksLoading = undefined;
      }
    })();
    return this.jwksLoading;
  }

  private async refetchForUnknownKid(): Promise<void> {
    if (this.jwksLoading) {
      await this.jwksLoading.catch(() => {});
      return;
    }
    if (this.now() - this.jwksFetchedMs < (this.config.jwksMinRefetchMs ?? 10_000)) return;
    try {
      await this.fetchJwks();
    } catch (e) {
      throw unavailable("KEYS_UNAVAILABLE", `the token's key is not cached and the JWKS cannot be fetched: ${(e as Error).message}`);
    }
  }

  /** The URL the agent addressed: public base URL + path (+ query, for signatures). */
  private publicUrl(scheme: Scheme, req: AgentRequest, withQuery: boolean): string | undefined {
    if (!this.base) return undefined;
    let path = req.url;
    if (/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(path)) {
      // An absolute-form request target (RFC 9112 §3.2.2): its path and query. One the
      // URL parser refuses names nothing a proof could match: a refusal, not an exception.
      let u: URL;
      try {
        u = new URL(path);
      } catch {
        throw proofRejection(scheme, "PROOF_INVALID", "the request target is not a valid absolute URI");
      }
      path = u.pathname + u.search;
    }
    const q = path.indexOf("?");
    const bare = q < 0 ? path : path.slice(0, q);
    const query = q < 0 ? undefined : path.slice(q + 1);
    const p = bare === "" ? "/" : bare;
    return withQuery && query !== undefined ? `${this.base}${p}?${query}` : `${this.base}${p}`;
  }

  private async checkProof(token: string, scheme: Scheme, claims: AgentClaims, req: AgentRequest, now: number): Promise<ProofKind | undefined> {
    const jkt = claims.cnf?.jkt;
    if (jkt === undefined) {
      if (scheme === "dpop") {
        throw proofRejection(scheme, "PROOF_INVALID", "the token is not bound to a key (no `cnf.jkt`): present it as `Bearer`");
      }
      if (this.proofs.requireBinding) {
        throw unauthorized(scheme, "invalid_token", "PROOF_REQUIRED", "this receiver accepts only key-bound tokens with a proof of possession");
      }
      return undefined;
    }
    if (scheme === "dpop") {
      if (!this.proofs.dpop) throw proofRejection(scheme, "PROOF_INVALID", "this receiver does not accept DPoP proofs");
      await this.checkDpop(token, jkt, req, now);
      return "dpop";
    }
    if (this.proofs.httpSignature && all(req, "signature-input").length > 0) {
      await this.checkSignature(scheme, claims, jkt, req, now);
      return "http-signature";
    }
    throw unauthorized(
      "dpop",
      "invalid_token",
      "PROOF_REQUIRED",
      "the token is bound to a key (`cnf.jkt`): send it as `Authorization: DPoP` with a `DPoP` proof, or sign the request (HTTP message signature)",
    );
  }

  private noBase(scheme: Scheme): Rejection {
    return proofRejection(scheme, "PROOF_INVALID", "this receiver cannot check proofs: it has no public base URL configured");
  }

  private async checkDpop(token: string, jkt: string, req: AgentRequest, now: number): Promise<void> {
    const scheme: Scheme = "dpop";
    const proofs = all(req, "dpop");
    if (proofs.length === 0) throw proofRejection(scheme, "PROOF_REQUIRED", "`Authorization: DPoP` needs a `DPoP` proof header");
    if (proofs.length > 1) throw proofRejection(scheme, "PROOF_INVALID", "more than one `DPoP` header");
    const proof = (proofs[0] as string).trim();
    const htu = this.publicUrl(scheme, req, false);
    if (!htu) throw this.noBase(scheme);
    const maxAge = this.config.proofMaxAgeSecs ?? 300;
    const check = { htm: req.method, htu, jkt, accessToken: token, now, maxAge, leeway: this.config.leewaySecs ?? DEFAULT_LEEWAY_SECS };
    let verified: Awaited<ReturnType<typeof verifyProof>>;
    try {
      verified = await verifyProof(proof, check, this.proofKeys.get(jkt));
    } catch (e) {
      if (e instanceof DpopError) throw proofRejection(scheme, "PROOF_INVALID", e.message);
      throw e;
    }
    if (!this.proofKeys.has(jkt)) {
      if (this.proofKeys.size >= MAX_PROOF_KEYS) this.proofKeys.clear();
      this.proofKeys.set(jkt, verified.key);
    }
    await this.claim(scheme, "dpop", jkt, verified.jti, verified.replayUntil, now);
  }

  private async claim(scheme: Scheme, ns: "dpop" | "sig", id: string, unique: string, lastValid: number, now: number): Promise<void> {
    const outcome = await this.replay.claim(ns, id, unique, lastValid, now);
    if (outcome === "replay") throw proofRejection(scheme, "REPLAY", "this proof has been used before");
    if (outcome === "full") throw unavailable("REPLAY_CACHE_FULL", "too many recent proofs to remember; try again shortly");
  }

  private async checkSignature(scheme: Scheme, claims: AgentClaims, jkt: string, req: AgentRequest, now: number): Promise<void> {
    const url = this.publicUrl(scheme, req, true);
    if (!url) throw this.noBase(scheme);
    const jwk = await this.agentKey(scheme, currentActor(claims), jkt);
    let verified: Awaited<ReturnType<typeof verifySignature>>;
    try {
      verified = await verifySignature(
        { method: req.method, url, headers: req.headers },
        {
          now,
          maxAge: this.config.proofMaxAgeSecs ?? 300,
          leeway: this.config.leewaySecs ?? DEFAULT_LEEWAY_SECS,
          requireNonce: true,
        },
        async (keyid) => (keyid === jkt ? VerifyingKey.fromJwk(jwk).catch(() => undefined) : undefined),
      );
    } catch (e) {
      if (e instanceof HttpSigError) {
        const m = e.kind === "unknown_key" ? "the signature's `keyid` is not the key the token is bound to (`cnf.jkt`)" : e.message;
        throw proofRejection(scheme, "PROOF_INVALID", m);
      }
      throw e;
    }
    await this.claim(scheme, "sig", verified.keyid, verified.nonce ?? "", verified.replayUntil, now);
  }

  /** The public JWK of `agent` whose thumbprint is `jkt`. */
  private async agentKey(scheme: Scheme, agent: string, jkt: string): Promise<Jwk> {
    const notFound = () => proofRejection(scheme, "PROOF_INVALID", `no public key of agent \`${agent}\` has the thumbprint the token is bound to`);
    const src = this.config.agentKeys ?? { kind: "registry", registryUrl: this.config.registryUrl };
    const find = async (keys: Jwk[]) => {
      for (const k of keys) {
        try {
          if ((await thumbprint(k)) === jkt) return k;
        } catch {
          // A key this SDK cannot read is not the bound key.
        }
      }
      return undefined;
    };
    if (src.kind === "none") {
      throw proofRejection(scheme, "PROOF_INVALID", "this receiver has no source of agent keys: message signatures cannot be checked (use DPoP)");
    }
    if (src.kind === "resolver") {
      const k = await src.resolve(agent, jkt);
      if (!k || (await thumbprint(k).catch(() => "")) !== jkt) throw notFound();
      return k;
    }
    const ttl = src.ttlMs ?? 300_000;
    const nowMs = this.now();
    const cached = this.directories.get(agent);
    if (cached) {
      const age = nowMs - cached.at;
      const k = await find(cached.keys);
      if (age < ttl && k) return k;
      if (age < DIRECTORY_MIN_REFETCH_MS) {
        if (k) return k;
        throw notFound();
      }
    }
    if (!isId(agent, "agt_")) throw notFound();
    let loading = this.directoryLoads.get(agent);
    if (!loading) {
      const url = `${src.registryUrl.replace(/\/+$/, "")}/agents/${agent}${DIRECTORY_PATH}`;
      loading = (async () => {
        try {
          return (await loadJwks(this.fetchImpl, url)).keys;
        } catch (e) {
          // 404 and 410 (no usable key): remember "no keys" for a short while too.
          if (e instanceof FetchError && e.status !== undefined && e.status >= 400 && e.status < 500) return [];
          throw e;
        }
      })();
      this.directoryLoads.set(agent, loading);
    }
    let keys: Jwk[];
    try {
      keys = await loading;
    } catch (e) {
      throw unavailable("KEYS_UNAVAILABLE", `cannot fetch agent \`${agent}\`'s key directory: ${(e as Error).message}`);
    } finally {
      this.directoryLoads.delete(agent);
    }
    if (this.directories.size >= MAX_CACHED_AGENTS) this.directories.clear();
    this.directories.set(agent, { at: nowMs, keys });
    const k = await find(keys);
    if (!k) throw notFound();
    return k;
  }

  /** Online mode: the registry decides. */
  private async askRegistry(client: RegistryClient, p: { token: string; scheme: Scheme }, req: AgentRequest): Promise<VerifiedAgent> {
    const scheme = p.scheme;
    const body: { token: string; audience?: string; proof?: VerifyProof } = { token: p.token };
    const aud = this.config.audience;
    const first = Array.isArray(aud) ? aud[0] : aud;
    if (first !== undefined) body.audience = first;
    let kind: ProofKind | undefined;
    if (scheme === "dpop") {
      const proofs = all(req, "dpop");
      if (proofs.length > 1) throw proofRejection(scheme, "PROOF_INVALID", "more than one `DPoP` header");
      if (proofs.length === 0) throw proofRejection(scheme, "PROOF_REQUIRED", "`Authorization: DPoP` needs a `DPoP` proof header");
      const htu = this.publicUrl(scheme, req, false);
      if (!htu) throw this.noBase(scheme);
      body.proof = { type: "dpop", jwt: (proofs[0] as string).trim(), htm: req.method, htu };
      kind = "dpop";
    } else if (all(req, "signature-input").length > 0) {
      const url = this.publicUrl(scheme, req, true);
      if (!url) throw this.noBase(scheme);
      body.proof = { type: "http-signature", method: req.method, url, headers: signatureHeaders(req) };
      kind = "http-signature";
    }
    let answer: VerifyResponse;
    try {
      try {
        answer = await client.verify(body);
      } catch (e) {
        // An unbound token on a signed request: Web Bot Auth agents may sign every
        // request; offline such a signature is ignored, so do the same.
        if (kind === "http-signature" && e instanceof ApiError && e.code === "PROOF_NOT_APPLICABLE") {
          delete body.proof;
          kind = undefined;
          answer = await client.verify(body);
        } else throw e;
      }
    } catch (e) {
      if (e instanceof ApiError && e.code === "PROOF_NOT_APPLICABLE") throw proofRejection(scheme, "PROOF_INVALID", e.message);
      if (e instanceof ApiError && (e.status === 400 || e.status === 413 || e.status === 422)) {
        throw unauthorized(scheme, "invalid_token", e.code, e.message);
      }
      throw unavailable("REGISTRY_UNAVAILABLE", `the registry cannot verify this request now: ${(e as Error).message}`);
    }
    return onlineAgent(scheme, answer, kind);
  }
}

function tokenRejection(scheme: Scheme, e: unknown): Rejection {
  if (e instanceof Rejection) return e;
  if (e instanceof VerifyError) return unauthorized(scheme, "invalid_token", e.code, e.message);
  return unauthorized(scheme, "invalid_token", "TOKEN_INVALID", e instanceof Error ? e.message : String(e));
}

/** The headers a message signature needs: `Signature`, `Signature-Input`, `Signature-Agent` and every covered one. */
function signatureHeaders(req: AgentRequest): Record<string, string> {
  const names = ["signature", "signature-input", "signature-agent"];
  for (const v of all(req, "signature-input")) {
    const parts = v.split('"');
    for (let i = 1; i < parts.length; i += 2) {
      const n = parts[i] as string;
      if (!n.startsWith("@")) names.push(n.toLowerCase());
    }
  }
  const out: Record<string, string> = {};
  for (const n of names) {
    const vs = all(req, n);
    if (vs.length > 0 && !(n in out)) out[n] = vs.join(", ");
  }
  return out;
}

function onlineAgent(scheme: Scheme, a: VerifyResponse, kind: ProofKind | undefined): VerifiedAgent {
  if (!a.valid) {
    const code = a.error?.code ?? "TOKEN_INVALID";
    const message = a.error?.message ?? "the registry refused the token without saying why";
    const oauth = scheme === "dpop" && ["PROOF_REQUIRED", "PROOF_INVALID", "REPLAY"].includes(code) ? "invalid_dpop_proof" : "invalid_token";
    throw unauthorized(scheme, oauth, code, message);
  }
  const malformed = () => unavailable("REGISTRY_UNAVAILABLE", "the registry's verify answer lacks the agent");
  const agent = a.agent;
  if (!agent || !isId(agent.id, "agt_")) throw malformed();
  const chain = a.delegation && a.delegation.length > 0 ? a.delegation.map((h) => h.agent_id) : [agent.id];
  if (!chain.every((id) => isId(id, "agt_"))) throw malformed();
  return new VerifiedAgent(
    agent.id,
    chain[chain.length - 1] as string,
    agent.name,
    agent.issuer,
    agent.active_scopes ?? [],
    a.user,
    undefined,
    kind,
    undefined,
    chain,
    true,
    undefined,
    undefined,
    a,
  );
}

/** The registry a JWKS URL belongs to: the URL without `/.well-known/jwks.json`, else its origin. */
export function registryOfJwks(jwksUrl: string): string | undefined {
  let u: URL;
  try {
    u = new URL(jwksUrl);
  } catch {
    return undefined;
  }
  const base = u.pathname.endsWith("/.well-known/jwks.json") ? u.pathname.slice(0, -"/.well-known/jwks.json".length) : "";
  return `${u.protocol}//${u.host}${base}`;
}
