// HTTP Message Signatures (RFC 9421) in the Web Bot Auth profile: verify and sign, as
// the Rust core's `httpsig` (same order of checks, same strictness): `ed25519` and
// `ecdsa-p256-sha256`; `tag="web-bot-auth"`, `created` and `expires` required,
// `@authority` covered, a present `Signature-Agent` covered whole or member by member
// (`"signature-agent";key="sig1"`); RFC 8941 fields with duplicate keys or parameters
// refused; the `Signature-Input` member must be in canonical serialization; header
// values with CR, LF or NUL refused. No replay cache here: the caller stores
// (`keyid`, `nonce`) until `replayUntil`.

import * as b64 from "./b64.js";
import type { Algorithm, VerifyingKey } from "./keys.js";

export const WEB_BOT_AUTH_TAG = "web-bot-auth";
export const SIGNATURE_AGENT = "signature-agent";
export const DIRECTORY_PATH = "/.well-known/http-message-signatures-directory";
export const MAX_MEMBERS = 16;
export const MAX_COMPONENTS = 32;
export const MAX_PARAMS = 16;
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;
const MAX_INT = 999_999_999_999_999;
const SHOWN = 64;

/** A message signature that does not hold, or cannot be made; `message` says why. */
export class HttpSigError extends Error {
  constructor(
    message: string,
    readonly kind: string = "invalid",
  ) {
    super(message);
    this.name = "HttpSigError";
  }
}

/** One request as its receiver saw it: headers as (name, value) pairs, in order. */
export interface SigMessage {
  method: string;
  /** Absolute target URI, no fragment. */
  url: string;
  headers: [string, string][];
}

/** The verifier's clock and policy. */
export interface SigCheck {
  now: number;
  leeway?: number;
  maxAge?: number;
  requiredTag?: string | null;
  requiredComponents?: string[];
  requireExpires?: boolean;
  requireNonce?: boolean;
  maxHeaderBytes?: number;
}

/** A signature that verified. */
export interface SigVerified {
  label: string;
  keyid: string;
  alg: Algorithm;
  created: number;
  expires: number | undefined;
  nonce: string | undefined;
  tag: string | undefined;
  covered: string[];
  signatureAgent: string | undefined;
  replayUntil: number;
}

const shown = (s: string) => [...s].slice(0, SHOWN).join("");

// ---- RFC 8941 -----------------------------------------------------------------

type Bare =
  | { t: "int"; v: number }
  | { t: "dec"; v: number }
  | { t: "str"; v: string }
  | { t: "token"; v: string }
  | { t: "bytes"; v: Uint8Array }
  | { t: "bool"; v: boolean };
type Params = [string, Bare][];
interface Item {
  bare: Bare;
  params: Params;
}
type Member = { t: "item"; item: Item } | { t: "inner"; items: Item[]; params: Params };
interface Entry {
  key: string;
  member: Member;
  text: [number, number];
}

const isLcalpha = (c: string) => c >= "a" && c <= "z";
const isDigit = (c: string) => c >= "0" && c <= "9";
const isAlpha = (c: string) => (c >= "a" && c <= "z") || (c >= "A" && c <= "Z");
const isTchar = (c: string) => isAlpha(c) || isDigit(c) || "!#$%&'*+-.^_`|~".includes(c);
const isLowerTchar = (c: string) => isLcalpha(c) || isDigit(c) || "!#$%&'*+-.^_`|~".includes(c);

function isKey(s: string): boolean {
  return /^[a-z*][a-z0-9_\-.*]*$/.test(s);
}

function decodeSfBytes(text: string): Uint8Array {
  let body = text;
  const eq = body.indexOf("=");
  if (eq >= 0) {
    const pad = body.slice(eq);
    if (!/^={1,2}$/.test(pad) || body.length % 4 !== 0) throw new b64.Base64Error();
    body = body.slice(0, eq);
  }
  if (/[^A-Za-z0-9+/]/.test(body)) throw new b64.Base64Error();
  return b64.decode(body.replace(/\+/g, "-").replace(/\//g, "_"));
}

class SfParser {
  pos = 0;
  constructor(
    readonly s: string,
    readonly field: string,
  ) {}
  peek(): string | undefined {
    return this.pos < this.s.length ? this.s[this.pos] : undefined;
  }
  eat(c: string): boolean {
    if (this.peek() === c) {
      this.pos++;
      return true;
    }
    return false;
  }
  next(): string | undefined {
    const c = this.peek();
    if (c !== undefined) this.pos++;
    return c;
  }
  err(reason: string): HttpSigError {
    return new HttpSigError(`malformed \`${this.field}\` header at byte ${this.pos}: ${reason}`, "malformed");
  }
  skipSp(): void {
    while (this.eat(" ")) {}
  }
  skipOws(): void {
    while (this.eat(" ") || this.eat("\t")) {}
  }
  key(): string {
    const c = this.peek();
    if (c === undefined || !(isLcalpha(c) || c === "*")) throw this.err("expected a key");
    const start = this.pos;
    for (let d = this.peek(); d !== undefined && (isLcalpha(d) || isDigit(d) || "_-.*".includes(d)); d = this.peek()) this.pos++;
    return this.s.slice(start, this.pos);
  }
  params(): Params {
    const out: Params = [];
    while (this.eat(";")) {
      this.skipSp();
      const key = this.key();
      const value: Bare = this.eat("=") ? this.bare() : { t: "bool", v: true };
      if (out.some(([k]) => k === key)) throw this.err("duplicate parameter");
      out.push([key, value]);
      if (out.length > MAX_PARAMS) throw new HttpSigError(`more than ${MAX_PARAMS} parameters`, "too_many");
    }
    return out;
  }
  item(): Item {
    const bare = this.bare();
    return { bare, params: this.params() };
  }
  inner(): { items: Item[]; params: Params } {
    if (!this.eat("(")) throw this.err("expected `(`");
    const items: Item[] = [];
    for (;;) {
      this.skipSp();
      if (this.eat(")")) return { items, params: this.params() };
      items.push(this.item());
      if (items.length > MAX_COMPONENTS) throw new HttpSigError(`more than ${MAX_COMPONENTS} inner list items`, "too_many");
      const c = this.peek();
      if (c !== " " && c !== ")") throw this.err("expected a space or `)` in inner list");
    }
  }
  bare(): Bare {
    const c = this.peek();
    if (c === "-" || (c !== undefined && isDigit(c))) return this.number();
    if (c === '"') return this.string();
    if (c === ":") return this.bytes();
    if (c === "?") return this.boolean();
    if (c !== undefined && (isAlpha(c) || c === "*")) return this.token();
    throw this.err("expected an item");
  }
  number(): Bare {
    const neg = this.eat("-");
    let int = 0;
    let digits = 0;
    for (let d = this.peek(); d !== undefined && isDigit(d); d = this.peek()) {
      this.pos++;
      if (++digits > 15) throw this.err("integer longer than 15 digits");
      int = int * 10 + Number(d);
    }
    if (digits === 0) throw this.err("expected a digit");
    const sign = neg ? -1 : 1;
    if (!this.eat(".")) return { t: "int", v: sign * int };
    if (digits > 12) throw this.err("decimal with more than 12 integer digits");
    let frac = 0;
    let fd = 0;
    for (let d = this.peek(); d !== undefined && isDigit(d); d = this.peek()) {
      this.pos++;
      if (++fd > 3) throw this.err("decimal with more than 3 fractional digits");
      frac = frac * 10 + Number(d);
    }
    if (fd === 0) throw this.err("decimal ends with `.`");
    return { t: "dec", v: sign * (int * 1000 + frac * 10 ** (3 - fd)) };
  }
  string(): Bare {
    this.eat('"');
    let out = "";
    for (;;) {
      const c = this.next();
      if (c === undefined) throw this.err("unterminated string");
      if (c === '"') return { t: "str", v: out };
      if (c === "\\") {
        const e = this.next();
        if (e !== '"' && e !== "\\") throw this.err("invalid escape in string");
        out += e;
        continue;
      }
      const code = c.charCodeAt(0);
      if (code < 0x20 || code > 0x7e) throw this.err("non-printable character in string");
      out += c;
    }
  }
  token(): Bare {
    const start = this.pos;
    for (let d = this.peek(); d !== undefined && (isTchar(d) || d === ":" || d === "/"); d = this.peek()) this.pos++;
    return { t: "token", v: this.s.slice(start, this.pos) };
  }
  bytes(): Bare {
    this.eat(":");
    const start = this.pos;
    for (let d = this.peek(); d !== undefined && (isAlpha(d) || isDigit(d) || "+/=".includes(d)); d = this.peek()) this.pos++;
    const enc = this.s.slice(start, this.pos);
    if (!this.eat(":")) throw this.err("unterminated byte sequence");
    try {
      return { t: "bytes", v: decodeSfBytes(enc) };
    } catch {
      throw this.err("invalid base64 in byte sequence");
    }
  }
  boolean(): Bare {
    this.eat("?");
    const c = this.next();
    if (c === "1") return { t: "bool", v: true };
    if (c === "0") return { t: "bool", v: false };
    throw this.err("invalid boolean");
  }
}

function parseDictionary(input: string, field: string): Entry[] {
  const p = new SfParser(input, field);
  p.skipSp();
  const entries: Entry[] = [];
  while (p.peek() !== undefined) {
    const key = p.key();
    if (entries.some((e) => e.key === key)) throw p.err("duplicate dictionary key");
    let member: Member;
    let text: [number, number];
    if (p.eat("=")) {
      const start = p.pos;
      if (p.peek() === "(") {
        const { items, params } = p.inner();
        member = { t: "inner", items, params };
      } else member = { t: "item", item: p.item() };
      text = [start, p.pos];
    } else {
      member = { t: "item", item: { bare: { t: "bool", v: true }, params: p.params() } };
      text = [p.pos, p.pos];
    }
    entries.push({ key, member, text });
    if (entries.length > MAX_MEMBERS) throw new HttpSigError(`more than ${MAX_MEMBERS} dictionary members`, "too_many");
    p.skipOws();
    if (p.peek() === undefined) break;
    if (!p.eat(",")) throw p.err("expected `,` between members");
    p.skipOws();
    if (p.peek() === undefined) throw p.err("trailing comma");
  }
  return entries;
}

function serBare(b: Bare): string {
  switch (b.t) {
    case "int":
      return String(b.v);
    case "dec": {
      const sign = b.v < 0 ? "-" : "";
      const abs = Math.abs(b.v);
      const frac = String(abs % 1000).padStart(3, "0").replace(/(?<=.)0+$/, "");
      return `${sign}${Math.floor(abs / 1000)}.${frac}`;
    }
    case "str":
      return `"${b.v.replace(/["\\]/g, (c) => `\\${c}`)}"`;
    case "token":
      return b.v;
    case "bytes":
      return `:${b64.encodeStandard(b.v)}:`;
    case "bool":
      return b.v ? "?1" : "?0";
  }
}

function serParams(params: Params): string {
  let out = "";
  for (const [k, v] of params) out += v.t === "bool" && v.v ? `;${k}` : `;${k}=${serBare(v)}`;
  return out;
}

const serItem = (i: Item) => serBare(i.bare) + serParams(i.params);
const serInner = (items: Item[], params: Params) => `(${items.map(serItem).join(" ")})${serParams(params)}`;

// ---- the message ----------------------------------------------------------------

interface Target {
  uri: string;
  scheme: string;
  authority: string;
  path: string;
  query: string | undefined;
}

function parseTarget(url: string): Target {
  const bad = (why: string) => new HttpSigError(`target URI ${why}`, "bad_url");
  if (!/^[\x21-\x7e]*$/.test(url)) throw bad("holds spaces, control or non-ASCII characters");
  if (url.includes("#")) throw bad("holds a fragment");
  const sep = url.indexOf("://");
  if (sep < 0) throw bad("is not an absolute http or https URI");
  const scheme = url.slice(0, sep).toLowerCase();
  const defaultPort = scheme === "http" ? "80" : scheme === "https" ? "443" : undefined;
  if (!defaultPort) throw bad("is not an absolute http or https URI");
  const rest = url.slice(sep + 3);
  const endAt = rest.search(/[/?]/);
  const end = endAt < 0 ? rest.length : endAt;
  const authority = rest.slice(0, end);
  const pathQuery = rest.slice(end);
  if (authority.includes("@")) throw bad("holds userinfo");
  let host: string;
  let port: string | undefined;
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0) throw bad("has an unclosed IPv6 literal");
    host = authority.slice(0, close + 1);
    const after = authority.slice(close + 1);
    if (after.startsWith(":")) port = after.slice(1);
    else if (after !== "") throw bad("has junk after the IPv6 literal");
  } else {
    const c = authority.indexOf(":");
    host = c < 0 ? authority : authority.slice(0, c);
    port = c < 0 ? undefined : authority.slice(c + 1);
  }
  if (host === "") throw bad("has no host");
  let auth = host.toLowerCase();
  if (port !== undefined && port !== "") {
    if (port.length > 5 || !/^[0-9]+$/.test(port) || Number(port) > 65535) throw bad("has an invalid port");
    if (String(Number(port)) !== defaultPort) auth += `:${Number(port)}`;
  }
  const q = pathQuery.indexOf("?");
  const path = q < 0 ? pathQuery : pathQuery.slice(0, q);
  const query = q < 0 ? undefined : pathQuery.slice(q + 1);
  return { uri: url, scheme, authority: auth, path: path === "" ? "/" : path, query };
}

class Resolved {
  readonly target: Target;
  readonly signatureInput: string;
  constructor(
    readonly msg: SigMessage,
    limit: number,
  ) {
    if (msg.method === "" || ![...msg.method].every(isTchar)) {
      throw new HttpSigError(`method \`${shown(msg.method)}\` is not an HTTP token`);
    }
    this.target = parseTarget(msg.url);
    let size = msg.method.length + msg.url.length;
    for (const [k, v] of msg.headers) size += k.length + v.length + 4;
    if (size > limit) throw new HttpSigError(`message headers exceed ${limit} bytes`, "too_large");
    this.signatureInput = this.header("signature-input") ?? "";
  }

  header(name: string): string | undefined {
    let out: string | undefined;
    for (const [k, v] of this.msg.headers) {
      if (k.toLowerCase() !== name) continue;
      if (/[\r\n\0]/.test(v)) throw new HttpSigError(`header \`${shown(name)}\` holds a CR, LF or NUL`);
      const t = v.replace(/^[ \t]+|[ \t]+$/g, "");
      out = out === undefined ? t : `${out}, ${t}`;
    }
    return out;
  }

  component(name: string): string {
    if (!name.startsWith("@")) {
      const v = this.header(name);
      if (v === undefined) throw new HttpSigError(`covered header \`${shown(name)}\` is missing from the message`, "missing_component");
      return v;
    }
    const t = this.target;
    switch (name) {
      case "@method":
        return this.msg.method;
      case "@target-uri":
        return t.uri;
      case "@authority":
        return t.authority;
      case "@scheme":
        return t.scheme;
      case "@path":
        return t.path;
      case "@query":
        return `?${t.query ?? ""}`;
      case "@request-target":
        return t.query === undefined ? t.path : `${t.path}?${t.query}`;
      default:
        throw new HttpSigError(`component \`${shown(name)}\` is unknown, unsupported or not defined for this message`);
    }
  }

  dictionaryMember(name: string, key: string): string {
    const missing = () => new HttpSigError(`covered header \`${shown(name)};key=${key}\` is missing from the message`, "missing_component");
    const value = this.header(name);
    if (value === undefined) throw missing();
    const entry = parseDictionary(value, "covered dictionary field").find((e) => e.key === key);
    if (!entry) throw missing();
    return entry.member.t === "item" ? serItem(entry.member.item) : serInner(entry.member.items, entry.member.params);
  }
}

function componentKey(name: string, params: Params): string | undefined {
  if (params.length === 0) return undefined;
  const first = params[0] as [string, Bare];
  if (params.length === 1 && first[0] === "key" && first[1].t === "str" && !name.startsWith("@")) {
    if (isKey(first[1].v)) return first[1].v;
    throw new HttpSigError(`invalid component identifier \`${shown(name)}\``);
  }
  const other = params.find(([k]) => k !== "key")?.[0] ?? first[0];
  throw new HttpSigError(`component \`${shown(name)}\` has unsupported parameter \`${shown(other)}\``);
}

function coveredComponents(items: Item[]): [string, string | undefined][] {
  if (items.length > MAX_COMPONENTS) throw new HttpSigError(`more than ${MAX_COMPONENTS} covered components`, "too_many");
  const out: [string, string | undefined][] = [];
  for (const item of items) {
    if (item.bare.t !== "str") throw new HttpSigError(`invalid component identifier \`${shown(serBare(item.bare))}\``);
    const name = item.bare.v;
    const key = componentKey(name, item.params);
    const body = name.startsWith("@") ? name.slice(1) : name;
    const valid = body.length > 0 && [...body].every(isLowerTchar);
    if (!valid || name === "@signature-params") throw new HttpSigError(`invalid component identifier \`${shown(name)}\``);
    if (out.some(([n, k]) => n === name && k === key)) throw new HttpSigError(`component \`${shown(name)}\` is covered twice`);
    out.push([name, key]);
  }
  return out;
}

function buildBase(r: Resolved, items: Item[], paramsText: string): string {
  let base = "";
  for (const item of items) {
    if (item.bare.t !== "str") throw new HttpSigError("invalid component identifier ``");
    const name = item.bare.v;
    const key = componentKey(name, item.params);
    const value = key === undefined ? r.component(name) : r.dictionaryMember(name, key);
    base += `${serItem(item)}: ${value}\n`;
  }
  return `${base}"@signature-params": ${paramsText}`;
}

function signatureAgentCovered(value: string, covered: [string, string | undefined][]): void {
  const agentKeys = covered.filter(([n]) => n === SIGNATURE_AGENT).map(([, k]) => k);
  if (agentKeys.includes(undefined)) return;
  const notCovered = new HttpSigError(`signature does not cover required component \`${SIGNATURE_AGENT}\``);
  if (agentKeys.length === 0) throw notCovered;
  const members = parseDictionary(value, "Signature-Agent");
  if (!members.every((m) => agentKeys.includes(m.key))) throw notCovered;
}

/** Verifies one signature of `msg`; `keyFor` maps a `keyid` (the JWK thumbprint) to its key. */
export async function verifySignature(
  msg: SigMessage,
  check: SigCheck,
  keyFor: (keyid: string) => Promise<VerifyingKey | undefined> | VerifyingKey | undefined,
): Promise<SigVerified> {
  const leeway = check.leeway ?? 60;
  const maxAge = check.maxAge ?? 300;
  const tag = check.requiredTag === undefined ? WEB_BOT_AUTH_TAG : check.requiredTag;
  const r = new Resolved(msg, check.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES);
  if (r.signatureInput === "") throw new HttpSigError("missing `Signature-Input` header", "missing_header");
  const entries = parseDictionary(r.signatureInput, "Signature-Input");
  const entry =
    tag === null
      ? entries[0]
      : entries.find((e) => e.member.t === "inner" && e.member.params.some(([k, v]) => k === "tag" && v.t === "str" && v.v === tag));
  if (!entry) throw new HttpSigError(tag === null ? "missing `Signature-Input` header" : `no signature with tag \`${shown(tag)}\``);
  if (entry.member.t !== "inner") throw new HttpSigError(`\`Signature-Input\` member \`${entry.key}\` is not an inner list`);
  const { items, params } = entry.member;
  const canonical = serInner(items, params);
  if (canonical !== r.signatureInput.slice(entry.text[0], entry.text[1])) {
    throw new HttpSigError(`\`Signature-Input\` member \`${entry.key}\` is not canonically serialized (RFC 8941 §4.1)`);
  }
  const param = (name: string, type: "int" | "str"): number | string | undefined => {
    const p = params.find(([k]) => k === name);
    if (!p) return undefined;
    if (p[1].t !== type) throw new HttpSigError(`signature parameter \`${name}\` must be ${type === "int" ? "an integer" : "a string"}`);
    return p[1].v as number | string;
  };
  const created = param("created", "int") as number | undefined;
  const expires = param("expires", "int") as number | undefined;
  const keyid = param("keyid", "str") as string | undefined;
  const algParam = param("alg", "str") as string | undefined;
  const nonce = param("nonce", "str") as string | undefined;
  const sigTag = param("tag", "str") as string | undefined;
  if (created === undefined) throw new HttpSigError("signature parameter `created` is missing");
  if (expires !== undefined) {
    if (expires < created) throw new HttpSigError(`\`expires\` (${expires}) is before \`created\` (${created})`);
  } else if (check.requireExpires ?? true) throw new HttpSigError("signature parameter `expires` is missing");
  const now = check.now;
  if (created > now + leeway) throw new HttpSigError(`\`created\` (${created}) is in the future (now ${now})`);
  if (expires !== undefined && now > expires + leeway) throw new HttpSigError(`signature expired at ${expires} (now ${now})`);
  if (now > created + maxAge + leeway) {
    throw new HttpSigError(`signature created at ${created} is older than ${maxAge} s (now ${now})`);
  }
  if (check.requireNonce && nonce === undefined) throw new HttpSigError("signature parameter `nonce` is missing");
  const comps = coveredComponents(items);
  const covered = comps.map(([n]) => n);
  for (const required of check.requiredComponents ?? ["@authority"]) {
    const met = covered.some((c) => c === required || (required === "@authority" && c === "@target-uri"));
    if (!met) throw new HttpSigError(`signature does not cover required component \`${shown(required)}\``);
  }
  const signatureAgent = r.header(SIGNATURE_AGENT);
  if (signatureAgent !== undefined) signatureAgentCovered(signatureAgent, comps);
  const sigField = r.header("signature");
  if (sigField === undefined) throw new HttpSigError("missing `Signature` header", "missing_header");
  const sigEntry = parseDictionary(sigField, "Signature").find((e) => e.key === entry.key);
  if (!sigEntry) throw new HttpSigError(`no \`${entry.key}\` member in \`Signature\``);
  if (sigEntry.member.t !== "item" || sigEntry.member.item.bare.t !== "bytes") {
    throw new HttpSigError(`\`Signature\` member \`${entry.key}\` is not a byte sequence`);
  }
  const sig = sigEntry.member.item.bare.v;
  if (keyid === undefined) throw new HttpSigError("signature parameter `keyid` is missing");
  const key = await keyFor(keyid);
  if (!key) throw new HttpSigError(`unknown keyid \`${shown(keyid)}\``, "unknown_key");
  if (key.alg !== "EdDSA" && key.alg !== "ES256") {
    throw new HttpSigError(`key algorithm ${key.alg} is not usable for HTTP message signatures`);
  }
  if (algParam !== undefined) {
    const named = algParam === "ed25519" ? "EdDSA" : algParam === "ecdsa-p256-sha256" ? "ES256" : undefined;
    if (!named) throw new HttpSigError(`unsupported signature algorithm \`${shown(algParam)}\` (use ed25519 or ecdsa-p256-sha256)`);
    if (named !== key.alg) throw new HttpSigError(`\`alg\` \`${algParam}\` does not fit the ${key.alg} key`);
  }
  const base = buildBase(r, items, canonical);
  if (!(await key.verify(new TextEncoder().encode(base), sig))) throw new HttpSigError("signature does not verify");
  const last = created + maxAge;
  return {
    label: entry.key,
    keyid,
    alg: key.alg,
    created,
    expires,
    nonce,
    tag: sigTag,
    covered,
    signatureAgent,
    replayUntil: (expires === undefined ? last : Math.min(expires, last)) + leeway,
  };
}

/** A private key that signs messages: Ed25519 or P-256, with its public JWK thumbprint. */
export interface MessageSigningKey {
  alg: "EdDSA" | "ES256";
  /** RFC 7638 thumbprint of the public key: the Web Bot Auth `keyid`. */
  kid: string;
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** Parameters of a signature made by {@link signMessage}. */
export interface SignParams {
  label?: string;
  created: number;
  expires?: number;
  keyid?: string;
  nonce?: string;
  tag?: string;
  includeAlg?: boolean;
}

/** Signs `msg` over `components` (`@authority`, `signature-agent;key=sig1`, …); returns the two header values. */
export async function signMessage(
  key: MessageSigningKey,
  msg: SigMessage,
  components: string[],
  p: SignParams,
): Promise<{ signatureInput: string; signature: string }> {
  const label = p.label ?? "sig1";
  if (!isKey(label)) throw new HttpSigError("cannot sign: label must be an RFC 8941 key (lowercase letters, digits, `_-.*`)");
  if (components.length > MAX_COMPONENTS) throw new HttpSigError(`more than ${MAX_COMPONENTS} covered components`);
  const r = new Resolved(msg, Number.MAX_SAFE_INTEGER);
  const items: Item[] = components.map((c) => {
    const at = c.indexOf(";key=");
    if (at < 0) return { bare: { t: "str", v: c }, params: [] };
    return { bare: { t: "str", v: c.slice(0, at) }, params: [["key", { t: "str", v: c.slice(at + 5).replace(/^"|"$/g, "") }]] };
  });
  coveredComponents(items);
  const text = (v: string, what: string): Bare => {
    if (!/^[\x20-\x7e]*$/.test(v)) throw new HttpSigError(`cannot sign: ${what} must be printable ASCII`);
    return { t: "str", v };
  };
  const sp: Params = [["created", { t: "int", v: p.created }]];
  if (p.expires !== undefined) sp.push(["expires", { t: "int", v: p.expires }]);
  sp.push(["keyid", text(p.keyid ?? key.kid, "keyid")]);
  if (p.includeAlg) sp.push(["alg", { t: "str", v: key.alg === "EdDSA" ? "ed25519" : "ecdsa-p256-sha256" }]);
  if (p.nonce !== undefined) sp.push(["nonce", text(p.nonce, "nonce")]);
  if (p.tag !== undefined) sp.push(["tag", text(p.tag, "tag")]);
  for (const [, v] of sp) {
    if (v.t === "int" && (!Number.isSafeInteger(v.v) || Math.abs(v.v) > MAX_INT)) {
      throw new HttpSigError("cannot sign: created and expires must have at most 15 digits");
    }
  }
  const inner = serInner(items, sp);
  const base = buildBase(r, items, inner);
  const sig = await key.sign(new TextEncoder().encode(base));
  return { signatureInput: `${label}=${inner}`, signature: `${label}=:${b64.encodeStandard(sig)}:` };
}

/** The RFC 9530 `Content-Digest` of a body with SHA-256. */
export async function contentDigest(body: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", body as Uint8Array<ArrayBuffer>));
  return `sha-256=:${b64.encodeStandard(d)}:`;
}

/** The signature base (RFC 9421 §2.5) of the `Signature-Input` member `label`, for diagnostics and vectors. */
export function signatureBase(msg: SigMessage, label: string): string {
  const r = new Resolved(msg, DEFAULT_MAX_HEADER_BYTES);
  if (r.signatureInput === "") throw new HttpSigError("missing `Signature-Input` header", "missing_header");
  const entry = parseDictionary(r.signatureInput, "Signature-Input").find((e) => e.key === label);
  if (!entry) throw new HttpSigError(`no \`${shown(label)}\` member in \`Signature-Input\``);
  if (entry.member.t !== "inner") throw new HttpSigError(`\`Signature-Input\` member \`${entry.key}\` is not an inner list`);
  const canonical = serInner(entry.member.items, entry.member.params);
  if (canonical !== r.signatureInput.slice(entry.text[0], entry.text[1])) {
    throw new HttpSigError(`\`Signature-Input\` member \`${entry.key}\` is not canonically serialized (RFC 8941 §4.1)`);
  }
  coveredComponents(entry.member.items);
  return buildBase(r, entry.member.items, canonical);
}
