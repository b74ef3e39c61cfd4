// Verifying keys for RS256, ES256 and EdDSA (Ed25519) from their public JWK (RFC 7517,
// RFC 7518 §6, RFC 8037), and RFC 7638 thumbprints. A key has exactly one algorithm
// (the per-key allow-list of RFC 8725 §3.1), so a token never chooses how it is
// verified. Keys are imported once into Web Crypto and reused.

import { importJWK } from "jose";
import * as b64 from "./b64.js";

/** The JWS algorithms Bonafide verifies. Nothing else: not `none`, HMAC, PSS or other curves. */
export type Algorithm = "RS256" | "ES256" | "EdDSA";
/** Every algorithm, the default allow-list. */
export const ALL_ALGS: readonly Algorithm[] = ["RS256", "ES256", "EdDSA"];

/** Parses an `alg` value: exact, case-sensitive (RFC 7515 §4.1.1). */
export function parseAlgorithm(alg: string): Algorithm | undefined {
  return alg === "RS256" || alg === "ES256" || alg === "EdDSA" ? alg : undefined;
}

/** Smallest and largest RSA moduli accepted, in bits. */
export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 8192;

/** A public JWK (the members Bonafide reads). */
export interface Jwk {
  kty: string;
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
  alg?: string;
  kid?: string;
  use?: string;
  [member: string]: unknown;
}

/** A JWK Set. */
export interface Jwks {
  keys: Jwk[];
}

/** Why a key is not usable. */
export class KeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KeyError";
  }
}

const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] as const;

/** Refuses JWKs with private or secret members. */
export function checkPublic(jwk: Record<string, unknown>): void {
  for (const m of PRIVATE_MEMBERS) {
    if (jwk[m] !== undefined) throw new KeyError(`the JWK carries the private member \`${m}\``);
  }
}

const te = new TextEncoder();

/** SHA-256 of bytes. */
export async function sha256(data: Uint8Array | string): Promise<Uint8Array> {
  const bytes = typeof data === "string" ? te.encode(data) : data;
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

/** RFC 7638 thumbprint: base64url(SHA-256(required members, sorted, no spaces)). */
export async function thumbprint(jwk: Jwk): Promise<string> {
  const s = (v: unknown, name: string): string => {
    if (typeof v !== "string") throw new KeyError(`the JWK member \`${name}\` is missing or not a string`);
    return JSON.stringify(v);
  };
  let canonical: string;
  switch (jwk.kty) {
    case "RSA":
      canonical = `{"e":${s(jwk.e, "e")},"kty":"RSA","n":${s(jwk.n, "n")}}`;
      break;
    case "EC":
      canonical = `{"crv":${s(jwk.crv, "crv")},"kty":"EC","x":${s(jwk.x, "x")},"y":${s(jwk.y, "y")}}`;
      break;
    case "OKP":
      canonical = `{"crv":${s(jwk.crv, "crv")},"kty":"OKP","x":${s(jwk.x, "x")}}`;
      break;
    default:
      throw new KeyError(`unsupported key type \`${String(jwk.kty).slice(0, 16)}\``);
  }
  return b64.encode(await sha256(canonical));
}

// y-coordinates of Ed25519 points of small order and their non-canonical spellings
// (libsodium's blocklist): with such a key a forged signature verifies for any message.
const SMALL_ORDER: string[] = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  `ec${"ff".repeat(30)}7f`,
  `ed${"ff".repeat(30)}7f`,
  `ee${"ff".repeat(30)}7f`,
];

function hex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

function decodeMember(jwk: Jwk, name: "n" | "e" | "x" | "y"): Uint8Array {
  const v = jwk[name];
  if (typeof v !== "string") throw new KeyError(`the JWK member \`${name}\` is missing or not a string`);
  try {
    return b64.decode(v);
  } catch {
    throw new KeyError(`the JWK member \`${name}\` is not base64url`);
  }
}

function rsaBits(n: Uint8Array): number {
  let i = 0;
  while (i < n.length && n[i] === 0) i++;
  if (i === n.length) return 0;
  return (n.length - i - 1) * 8 + (32 - Math.clz32(n[i] as number));
}

/** A public key ready to verify: its algorithm, kid (RFC 7638 thumbprint) and JWK. */
export class VerifyingKey {
  private constructor(
    readonly alg: Algorithm,
    readonly kid: string,
    readonly jwk: Jwk,
    readonly key: CryptoKey,
  ) {}

  /** Imports a public JWK, refusing private members, unknown types and weak keys. */
  static async fromJwk(input: Jwk): Promise<VerifyingKey> {
    if (typeof input !== "object" || input === null || typeof input.kty !== "string") {
      throw new KeyError("not a JWK object with a string `kty`");
    }
    checkPublic(input);
    let declared: Algorithm | undefined;
    if (input.alg !== undefined) {
      declared = typeof input.alg === "string" ? parseAlgorithm(input.alg) : undefined;
      if (!declared) throw new KeyError(`unsupported algorithm \`${String(input.alg).slice(0, 32)}\``);
    }
    const mismatch = (alg: Algorithm) => new KeyError(`algorithm \`${alg}\` does not fit a \`${input.kty}\` key`);
    let alg: Algorithm;
    let clean: Jwk;
    if (input.kty === "RSA") {
      alg = declared ?? "RS256";
      if (alg !== "RS256") throw mismatch(alg);
      const bits = rsaBits(decodeMember(input, "n"));
      decodeMember(input, "e");
      if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
        throw new KeyError(`RSA modulus of ${bits} bits is outside 2048..=8192`);
      }
      clean = { kty: "RSA", n: input.n as string, e: input.e as string };
    } else if (input.kty === "EC" && input.crv === "P-256") {
      alg = declared ?? "ES256";
      if (alg !== "ES256") throw mismatch(alg);
      if (decodeMember(input, "x").length !== 32) throw new KeyError("the JWK member `x` is invalid");
      if (decodeMember(input, "y").length !== 32) throw new KeyError("the JWK member `y` is invalid");
      clean = { kty: "EC", crv: "P-256", x: input.x as string, y: input.y as string };
    } else if (input.kty === "OKP" && input.crv === "Ed25519") {
      alg = declared ?? "EdDSA";
      if (alg !== "EdDSA") throw mismatch(alg);
      const x = decodeMember(input, "x");
      if (x.length !== 32) throw new KeyError("the JWK member `x` is invalid");
      const y = x.slice();
      y[31] = (y[31] as number) & 0x7f;
      if (SMALL_ORDER.includes(hex(y))) throw new KeyError("Ed25519 public key of small order");
      clean = { kty: "OKP", crv: "Ed25519", x: input.x as string };
    } else {
      const shown = input.crv === undefined ? input.kty : `${input.kty}/${String(input.crv)}`;
      throw new KeyError(`unsupported key type \`${shown.slice(0, 32)}\``);
    }
    const kid = await thumbprint(clean);
    let key: CryptoKey;
    try {
      key = (await importJWK({ ...clean, alg }, alg, { extractable: false })) as CryptoKey;
    } catch (e) {
      throw new KeyError(`the key is not usable: ${e instanceof Error ? e.message : String(e)}`);
    }
    return new VerifyingKey(alg, kid, { ...clean, kid, alg }, key);
  }

  /** Checks a signature over `data` (ES256: R‖S, 64 bytes). */
  async verify(data: Uint8Array, sig: Uint8Array): Promise<boolean> {
    const d = data as Uint8Array<ArrayBuffer>;
    const s = sig as Uint8Array<ArrayBuffer>;
    try {
      switch (this.alg) {
        case "RS256":
          return await crypto.subtle.verify("RSASSA-PKCS1-v1_5", this.key, s, d);
        case "ES256":
          if (sig.length !== 64) return false;
          return await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, this.key, s, d);
        case "EdDSA":
          if (sig.length !== 64) return false;
          return await crypto.subtle.verify(this.key.algorithm, this.key, s, d);
      }
    } catch {
      return false;
    }
  }
}

/** Equal public members, equal key (RFC 7638 §3.2's required members). */
export function samePublicKey(a: Jwk, b: Jwk): boolean {
  return a.kty === b.kty && a.crv === b.crv && a.x === b.x && a.y === b.y && a.n === b.n && a.e === b.e;
}

/** Constant-time comparison of two strings (their UTF-16 units). */
export function ctEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** Lowercase hex of bytes. */
export { hex };
