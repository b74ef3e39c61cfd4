// Token Status Lists (draft-ietf-oauth-status-list) for receivers that verify offline:
// the Rust client's `status` module. A token names its entry (`status.status_list`
// {idx, uri}); the list is a signed JWT (`typ statuslist+jwt`, signed by the
// registry's status-list key, published apart from the token keys) with 2 bits per
// token: 0 valid, 1 revoked, 2 suspended. Only URIs under a trusted prefix are ever
// fetched (a token must not make the receiver fetch URLs of its choosing), lists are
// cached for their `ttl`, refetched with `If-None-Match`, at most once per
// `minRefetchMs`, one fetch in flight per list; a list older than `maxStalenessMs`
// (counted from its `iat`) fails closed unless configured to fail open. An entry that
// says revoked or suspended refuses the token whatever the list's age.

import * as b64 from "./b64.js";
import { invalid, VerifyError } from "./errors.js";
import { checkFetchUrl, FetchError, get, loadJwks, readBounded } from "./http.js";
import { isObject, type JsonObject } from "./json.js";
import { JwsError, open } from "./jws.js";
import type { Jwks } from "./keys.js";
import { type AgentClaims, KeySet } from "./token.js";

export const STATUS_LIST_TYP = "statuslist+jwt";
export const STATUS_LIST_MEDIA_TYPE = "application/statuslist+jwt";
export const MAX_LIST_BYTES = 16 * 1024 * 1024;
export const MAX_LIST_TOKEN_BYTES = 4 * 1024 * 1024;
export const STATUS_LISTS_PATH = "/v1/status-lists/";
export const STATUS_LIST_JWKS_PATH = "/.well-known/status-list-jwks.json";
const DEFAULT_TTL_MS = 60_000;
const MAX_LISTS = 1024;
const UNPUBLISHED_RETRY_MS = 1000;
const UNPUBLISHED_TRIES = 3;
const MAX_URI_BYTES = 2048;

/** A decoded list: `bits` per entry, least significant bits first. */
export class StatusList {
  constructor(
    readonly bits: 1 | 2 | 4 | 8,
    readonly bytes: Uint8Array,
  ) {}

  get length(): number {
    return this.bytes.length * (8 / this.bits);
  }

  /** The status at `idx`; throws for an index beyond the list. */
  get(idx: number): number {
    const perByte = 8 / this.bits;
    const byte = Math.floor(idx / perByte);
    if (!Number.isSafeInteger(idx) || idx < 0 || byte >= this.bytes.length) {
      throw new RangeError(`index ${idx} is beyond the list's ${this.length} entries`);
    }
    const shift = (idx % perByte) * this.bits;
    return ((this.bytes[byte] as number) >> shift) & (0xff >> (8 - this.bits));
  }

  /** Decodes `{bits, lst}` (zlib-compressed, base64url), inflating at most 16 MiB. */
  static async decode(encoded: { bits: unknown; lst: unknown }): Promise<StatusList> {
    const bits = encoded.bits;
    if (bits !== 1 && bits !== 2 && bits !== 4 && bits !== 8) throw new Error(`\`bits\` must be 1, 2, 4 or 8, not ${String(bits)}`);
    if (typeof encoded.lst !== "string") throw new Error("`lst` is not a string");
    let compressed: Uint8Array;
    try {
      compressed = b64.decode(encoded.lst);
    } catch (e) {
      throw new Error(`\`lst\` is not a compressed status list: base64url: ${(e as Error).message}`);
    }
    const stream = new Blob([compressed as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream("deflate"));
    let bytes: Uint8Array;
    try {
      bytes = await readBounded(new Response(stream), MAX_LIST_BYTES);
    } catch (e) {
      if (e instanceof FetchError) throw new Error(`a status list holds at most ${MAX_LIST_BYTES} bytes`);
      throw new Error(`\`lst\` is not a compressed status list: zlib: ${(e as Error).message}`);
    }
    return new StatusList(bits, bytes);
  }
}

/** Verified claims of a status list token. */
export interface StatusListClaims {
  sub: string;
  iat: number;
  exp: number | undefined;
  ttl: number | undefined;
  version: number | undefined;
  raw: JsonObject;
}

/** Verifies a Status List Token for `uri` with the status-list `keys` (the core's `status_list::verify`). */
export async function verifyStatusList(
  jws: string,
  keys: KeySet,
  uri: string,
  nowSecs: number,
  leewaySecs: number,
): Promise<{ claims: StatusListClaims; list: StatusList }> {
  const opened = await open(jws, { typ: { expected: STATUS_LIST_TYP }, keyFrom: "kid", algs: ["RS256", "ES256", "EdDSA"], maxBytes: MAX_LIST_TOKEN_BYTES }, (h) => {
    const k = keys.get(h.kid);
    if (!k) throw new JwsError("unknown_key", "no key with this `kid`");
    return k;
  });
  const c = opened.claims;
  const int = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v);
  if (typeof c.sub !== "string") throw new Error("status list token claims: `sub` is missing or not a string");
  if (!int(c.iat)) throw new Error("status list token claims: `iat` is missing or not an integer");
  if (c.exp !== undefined && c.exp !== null && !int(c.exp)) throw new Error("status list token claims: `exp` is not an integer");
  if (c.ttl !== undefined && c.ttl !== null && (!int(c.ttl) || (c.ttl as number) < 0)) {
    throw new Error("status list token claims: `ttl` is not a non-negative integer");
  }
  const sl = c.status_list;
  if (!isObject(sl)) throw new Error("status list token claims: `status_list` is missing");
  for (const k of Object.keys(sl)) {
    if (k !== "bits" && k !== "lst" && k !== "aggregation_uri") throw new Error(`status list token claims: unknown field \`${k}\``);
  }
  if (c.sub !== uri) throw new Error(`status list token claims: \`sub\` is not the list asked for (${uri})`);
  if (c.ttl === 0) throw new Error("status list token claims: `ttl` must be positive");
  const exp = c.exp === undefined || c.exp === null ? undefined : (c.exp as number);
  if (exp !== undefined && exp <= nowSecs - leewaySecs) throw new Error(`the status list token expired at ${exp}`);
  const list = await StatusList.decode(sl as { bits: unknown; lst: unknown });
  const version = int(c.version) && (c.version as number) >= 0 ? (c.version as number) : undefined;
  const ttl = c.ttl === undefined || c.ttl === null ? undefined : (c.ttl as number);
  return { claims: { sub: c.sub, iat: c.iat as number, exp, ttl, version, raw: c }, list };
}

/** What the status check found for a verified token. */
export type StatusCheck =
  | { kind: "no_status" }
  | { kind: "valid"; ageMs: number; version: number | undefined; uri: string; idx: number }
  | { kind: "unchecked"; ageMs: number | undefined; reason: string };

/** A token refused by its status, or a status that cannot be decided (`code` STATUS_LIST_*). */
export class StatusError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** True: the token is refused (401); false: this receiver cannot decide (503). */
    readonly refusal: boolean,
  ) {
    super(message);
    this.name = "StatusError";
  }
}

/** Where lists may be fetched from, and the keys they are signed with. */
export interface TrustedLists {
  /** `https://registry.example/v1/status-lists/` (normal form, ending in `/`). */
  prefix: string;
  /** The status-list JWKS URL, or a fixed key set. */
  keys: string | Jwks;
}

/** How status lists are fetched and trusted. */
export interface StatusListConfig {
  trusted: TrustedLists[];
  /** Oldest list whose "valid" is believed. Default 10 minutes. */
  maxStalenessMs?: number;
  /** Beyond it: refuse (default) or accept saying revocation was not checked. */
  whenStale?: "fail_closed" | "fail_open";
  /** A list is fetched at most once per this interval. Default 5 s. */
  minRefetchMs?: number;
  leewaySecs?: number;
  fetch?: typeof fetch;
}

/** The lists of the registry at `registryUrl`, with its status-list keys. */
export function registryLists(registryUrl: string): TrustedLists {
  const base = registryUrl.replace(/\/+$/, "");
  return { prefix: `${base}${STATUS_LISTS_PATH}`, keys: `${base}${STATUS_LIST_JWKS_PATH}` };
}

interface Cached {
  list: StatusList;
  etag: string | undefined;
  confirmedMs: number;
  issuedMs: number;
  ttlMs: number;
  expS: number | undefined;
  version: number | undefined;
}

interface Slot {
  trusted: number;
  list: Cached | undefined;
  nextMs: number | undefined;
  error: string | undefined;
  inFlight: Promise<void> | undefined;
}

interface Keys {
  url: string | undefined;
  set: KeySet | undefined;
  nextMs: number;
  loading: Promise<KeySet> | undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fetches, verifies and caches status lists. */
export class StatusLists {
  private readonly slots = new Map<string, Slot>();
  private readonly keys: Keys[] = [];
  private readonly maxStalenessMs: number;
  private readonly minRefetchMs: number;
  private readonly leeway: number;
  private readonly failOpen: boolean;
  private readonly fetchImpl: typeof fetch;

  private constructor(readonly config: StatusListConfig) {
    this.maxStalenessMs = config.maxStalenessMs ?? 600_000;
    this.minRefetchMs = config.minRefetchMs ?? 5_000;
    this.leeway = config.leewaySecs ?? 60;
    this.failOpen = config.whenStale === "fail_open";
    this.fetchImpl = config.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Checks the configuration (every prefix https or loopback http, normal form, ending in `/`). */
  static async create(config: StatusListConfig): Promise<StatusLists> {
    if (config.trusted.length === 0) throw new Error("no trusted status list prefix");
    if ((config.maxStalenessMs ?? 1) <= 0 || (config.leewaySecs ?? 0) < 0) {
      throw new Error("maxStalenessMs must be positive and leewaySecs ≥ 0");
    }
    const s = new StatusLists(config);
    for (const t of config.trusted) {
      checkFetchUrl(t.prefix, "trusted status list prefix");
      let u: URL;
      try {
        u = new URL(t.prefix);
      } catch {
        throw new Error(`trusted prefix \`${t.prefix}\` is not a URL`);
      }
      if (u.href !== t.prefix || !t.prefix.endsWith("/") || u.username || u.password || u.search || u.hash) {
        throw new Error(`trusted prefix \`${t.prefix}\` must be a URL in normal form ending in \`/\`, without user, query or fragment`);
      }
      if (typeof t.keys === "string") {
        checkFetchUrl(t.keys, "status list keys URL");
        s.keys.push({ url: t.keys, set: undefined, nextMs: Number.NEGATIVE_INFINITY, loading: undefined });
      } else {
        s.keys.push({ url: undefined, set: await KeySet.fromJwks(t.keys), nextMs: Number.POSITIVE_INFINITY, loading: undefined });
      }
    }
    return s;
  }

  /** The status of a verified token at `nowMs`. */
  async check(claims: AgentClaims, nowMs: number): Promise<StatusCheck> {
    const r = claims.status?.status_list;
    if (!r) return { kind: "no_status" };
    let slot = this.slots.get(r.uri);
    if (!slot) {
      const trusted = this.trusted(r.uri);
      slot = this.slot(r.uri, trusted);
    }
    let c = slot.list;
    if (!c || !this.fresh(c, nowMs)) c = await this.refresh(slot, r.uri, nowMs);
    const reason = () => slot.error ?? "the list is older than its bound";
    if (!c) return this.stale(undefined, reason());
    let status: number;
    try {
      status = c.list.get(r.idx);
    } catch {
      throw new StatusError("TOKEN_INVALID", `the token's status index ${r.idx} is beyond its list (${c.list.length} entries)`, true);
    }
    if (status === 1) throw new StatusError("TOKEN_REVOKED", "token has been revoked", true);
    if (status === 2) throw new StatusError("AGENT_SUSPENDED", "agent is suspended by its issuer", true);
    if (status !== 0) {
      const hex = `0x${status.toString(16).padStart(2, "0")}`;
      throw new StatusError("TOKEN_INVALID", `token claims are invalid: the token's status list entry is ${hex}, a status this verifier does not know`, true);
    }
    const ageMs = Math.max(0, ageOf(c, nowMs));
    if (this.usable(c, nowMs)) return { kind: "valid", ageMs, version: c.version, uri: r.uri, idx: r.idx };
    return this.stale(ageMs, reason());
  }

  private stale(ageMs: number | undefined, reason: string): StatusCheck {
    if (this.failOpen) return { kind: "unchecked", ageMs, reason };
    if (ageMs === undefined) {
      throw new StatusError("STATUS_LIST_UNAVAILABLE", `the token's status list cannot be fetched (failing closed): ${reason}`, false);
    }
    throw new StatusError(
      "STATUS_LIST_STALE",
      `the token's status list is ${Math.floor(ageMs / 1000)}s old, beyond this receiver's bound (failing closed): ${reason}`,
      false,
    );
  }

  private fresh(c: Cached, nowMs: number): boolean {
    return nowMs - c.confirmedMs < Math.min(c.ttlMs, this.maxStalenessMs) && this.usable(c, nowMs);
  }

  private usable(c: Cached, nowMs: number): boolean {
    const expired = c.expS !== undefined && (c.expS + this.leeway) * 1000 <= nowMs;
    return ageOf(c, nowMs) <= this.maxStalenessMs && !expired;
  }

  private trusted(uri: string): number {
    const untrusted = (reason: string) =>
      new StatusError("STATUS_LIST_UNTRUSTED", `the token's status list \`${uri.slice(0, 200)}\` is not one this receiver trusts: ${reason}`, true);
    if (uri.length > MAX_URI_BYTES) throw untrusted("it is too long");
    let u: URL;
    try {
      u = new URL(uri);
    } catch {
      throw untrusted("it is not a URL");
    }
    if (u.href !== uri || u.username || u.password || u.search || u.hash || uri.includes("?") || uri.includes("#")) {
      throw untrusted("it is not in normal form, or has user info, a query or a fragment");
    }
    const oneId = (rest: string) => rest !== "" && rest !== "." && rest !== ".." && /^[A-Za-z0-9\-._~]+$/.test(rest);
    const i = this.config.trusted.findIndex((t) => uri.startsWith(t.prefix) && oneId(uri.slice(t.prefix.length)));
    if (i < 0) {
      throw untrusted("it is not a list of the registry whose keys verify the token (see the trusted status list prefixes)");
    }
    return i;
  }

  private slot(uri: string, trusted: number): Slot {
    if (this.slots.size >= MAX_LISTS && !this.slots.has(uri)) {
      for (const [k, s] of this.slots) if (!s.list) this.slots.delete(k);
      if (this.slots.size >= MAX_LISTS) this.slots.clear();
    }
    let s = this.slots.get(uri);
    if (!s) {
      s = { trusted, list: undefined, nextMs: undefined, error: undefined, inFlight: undefined };
      this.slots.set(uri, s);
    }
    return s;
  }

  private async refresh(slot: Slot, uri: string, nowMs: number): Promise<Cached | undefined> {
    const recently = () => slot.nextMs !== undefined && nowMs < slot.nextMs;
    if (recently() && slot.list) return slot.list;
    if (slot.inFlight) {
      if (slot.list && this.usable(slot.list, nowMs)) return slot.list;
      await slot.inFlight;
      return slot.list;
    }
    if (recently()) return slot.list;
    let done: () => void = () => {};
    slot.inFlight = new Promise<void>((r) => {
      done = r;
    });
    try {
      slot.nextMs = nowMs + this.minRefetchMs;
      const etag = slot.list?.etag;
      const cachedVersion = slot.list?.version;
      let fetched = await this.fetchList(uri, etag, slot.trusted, nowMs);
      for (let tries = 1; tries < UNPUBLISHED_TRIES && etag === undefined && fetched.kind === "error" && fetched.unpublished; tries++) {
        await sleep(UNPUBLISHED_RETRY_MS);
        fetched = await this.fetchList(uri, undefined, slot.trusted, nowMs);
      }
      if (fetched.kind === "new") {
        const older = fetched.c.version !== undefined && cachedVersion !== undefined && fetched.c.version < cachedVersion;
        if (older || (cachedVersion !== undefined && fetched.c.version === undefined)) {
          slot.error = `the registry served an older version of the list (${fetched.c.version} after ${cachedVersion})`;
        } else {
          slot.list = fetched.c;
          slot.error = undefined;
        }
      } else if (fetched.kind === "not_modified") {
        if (slot.list) {
          slot.list = { ...slot.list, confirmedMs: nowMs };
          slot.error = undefined;
        } else slot.error = "304 Not Modified for a list not cached";
      } else {
        if (fetched.unpublished && slot.nextMs !== undefined) slot.nextMs = Math.min(slot.nextMs, nowMs + UNPUBLISHED_RETRY_MS);
        slot.error = fetched.reason;
      }
      return slot.list;
    } finally {
      slot.inFlight = undefined;
      done();
    }
  }

  private async listKeys(i: number, refetch: boolean, nowMs: number): Promise<KeySet> {
    const k = this.keys[i];
    if (!k) throw new Error("no keys for this prefix");
    const due = () => nowMs >= k.nextMs;
    if (k.set && (!refetch || !due())) return k.set;
    if (!k.url) {
      if (k.set) return k.set;
      throw new Error("no status list keys");
    }
    if (k.loading) return k.loading;
    if (!k.set && !due()) throw new Error(`the status list keys at ${k.url} could not be fetched; retrying shortly`);
    k.nextMs = nowMs + this.minRefetchMs;
    const url = k.url;
    k.loading = (async () => {
      try {
        const set = await KeySet.fromJwks(await loadJwks(this.fetchImpl, url));
        k.set = set;
        return set;
      } catch (e) {
        throw new Error(`cannot fetch the status list keys: ${(e as Error).message}`);
      } finally {
        k.loading = undefined;
      }
    })();
    return k.loading;
  }

  private async fetchList(
    uri: string,
    etag: string | undefined,
    trusted: number,
    nowMs: number,
  ): Promise<{ kind: "new"; c: Cached } | { kind: "not_modified" } | { kind: "error"; reason: string; unpublished: boolean }> {
    const fail = (reason: string, unpublished = false) => ({ kind: "error" as const, reason, unpublished });
    try {
      const headers: Record<string, string> = { accept: STATUS_LIST_MEDIA_TYPE };
      if (etag) headers["if-none-match"] = etag;
      const resp = await get(this.fetchImpl, uri, headers);
      if (resp.status === 304 && etag) {
        await resp.body?.cancel();
        return { kind: "not_modified" };
      }
      if (resp.status < 200 || resp.status > 299) {
        await resp.body?.cancel();
        return fail(`the registry answered HTTP ${resp.status}`, resp.status === 503);
      }
      const media = (resp.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
      if (media !== STATUS_LIST_MEDIA_TYPE) {
        await resp.body?.cancel();
        return fail(`the answer is ${media}, not ${STATUS_LIST_MEDIA_TYPE}`);
      }
      const newEtag = resp.headers.get("etag") ?? undefined;
      const body = await readBounded(resp, MAX_LIST_TOKEN_BYTES);
      const jws = new TextDecoder().decode(body).trim();
      const nowS = Math.floor(nowMs / 1000);
      let verified: Awaited<ReturnType<typeof verifyStatusList>>;
      try {
        verified = await verifyStatusList(jws, await this.listKeys(trusted, false, nowMs), uri, nowS, this.leeway);
      } catch (e) {
        if (!(e instanceof JwsError && e.kind === "unknown_key")) throw e;
        verified = await verifyStatusList(jws, await this.listKeys(trusted, true, nowMs), uri, nowS, this.leeway);
      }
      const { claims, list } = verified;
      return {
        kind: "new",
        c: {
          list,
          etag: newEtag,
          confirmedMs: nowMs,
          issuedMs: claims.iat * 1000,
          ttlMs: claims.ttl === undefined ? DEFAULT_TTL_MS : claims.ttl * 1000,
          expS: claims.exp,
          version: claims.version,
        },
      };
    } catch (e) {
      const m = e instanceof Error ? e.message : String(e);
      return fail(e instanceof JwsError ? `the list does not verify: ${m}` : m);
    }
  }
}

function ageOf(c: Cached, nowMs: number): number {
  return nowMs - Math.min(c.confirmedMs, c.issuedMs);
}

/** The refusal a status error means for a token, as a {@link VerifyError} when it is one. */
export function statusRefusal(e: StatusError): VerifyError | undefined {
  if (!e.refusal || e.code.startsWith("STATUS_LIST_")) return undefined;
  return e.code === "TOKEN_INVALID" ? invalid(e.message) : new VerifyError(e.code as "TOKEN_REVOKED", e.message);
}
