// The agent's side: its own key (Ed25519 or P-256, PKCS#8 PEM as `bonafide keys
// generate` writes it, or a fresh pair), DPoP proofs (RFC 9449) and HTTP message
// signatures (Web Bot Auth) for each request, and a `fetch` that adds them.

import { CompactSign, exportJWK, generateKeyPair, importPKCS8 } from "jose";
import * as b64 from "./b64.js";
import { accessTokenHash } from "./dpop.js";
import { type MessageSigningKey, signMessage, WEB_BOT_AUTH_TAG } from "./httpsig.js";
import { type Jwk, thumbprint } from "./keys.js";

/** An agent's private key, with its public JWK and RFC 7638 thumbprint (its tokens' `cnf.jkt`). */
export class AgentKey implements MessageSigningKey {
  private constructor(
    readonly alg: "EdDSA" | "ES256",
    readonly privateKey: CryptoKey,
    /** The public JWK, required members only. */
    readonly publicJwk: Jwk,
    readonly kid: string,
  ) {}

  /** A new key pair (the private key stays in this process). */
  static async generate(alg: "EdDSA" | "ES256" = "EdDSA"): Promise<AgentKey> {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, crv: alg === "EdDSA" ? "Ed25519" : undefined });
    return AgentKey.of(alg, privateKey, await exportJWK(publicKey));
  }

  /** A PKCS#8 PEM private key (Ed25519 or P-256). */
  static async fromPkcs8(pem: string, alg?: "EdDSA" | "ES256"): Promise<AgentKey> {
    const tries: ("EdDSA" | "ES256")[] = alg ? [alg] : ["EdDSA", "ES256"];
    let last: unknown;
    for (const a of tries) {
      try {
        const privateKey = await importPKCS8(pem, a, { extractable: true });
        const jwk = await exportJWK(privateKey);
        const { d: _d, ...pub } = jwk;
        return AgentKey.of(a, privateKey, pub);
      } catch (e) {
        last = e;
      }
    }
    throw new Error(`not an Ed25519 or P-256 PKCS#8 private key: ${last instanceof Error ? last.message : String(last)}`);
  }

  private static async of(alg: "EdDSA" | "ES256", privateKey: CryptoKey, jwk: Record<string, unknown>): Promise<AgentKey> {
    const pub: Jwk =
      alg === "EdDSA"
        ? { kty: "OKP", crv: "Ed25519", x: jwk.x as string }
        : { kty: "EC", crv: "P-256", x: jwk.x as string, y: jwk.y as string };
    return new AgentKey(alg, privateKey, pub, await thumbprint(pub));
  }

  /** Signs bytes (Ed25519, or ECDSA P-256 as R‖S). */
  async sign(data: Uint8Array): Promise<Uint8Array> {
    const algo = this.alg === "EdDSA" ? this.privateKey.algorithm : { name: "ECDSA", hash: "SHA-256" };
    return new Uint8Array(await crypto.subtle.sign(algo, this.privateKey, data as Uint8Array<ArrayBuffer>));
  }
}

function randomId(): string {
  return b64.encode(crypto.getRandomValues(new Uint8Array(18)));
}

/** A DPoP proof for one request `htm htu` presented with `accessToken` (RFC 9449 §4.2). */
export async function dpopProof(
  key: AgentKey,
  req: { htm: string; htu: string; accessToken: string; iat?: number; jti?: string },
): Promise<string> {
  const cut = req.htu.search(/[?#]/);
  const htu = cut < 0 ? req.htu : req.htu.slice(0, cut);
  const claims = {
    jti: req.jti ?? randomId(),
    htm: req.htm,
    htu,
    iat: req.iat ?? Math.floor(Date.now() / 1000),
    ath: await accessTokenHash(req.accessToken),
  };
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader({ typ: "dpop+jwt", alg: key.alg, jwk: key.publicJwk as never })
    .sign(key.privateKey);
}

/** Options of a message signature. */
export interface SignOptions {
  /** `Signature-Agent` header to send (covered). */
  signatureAgent?: string;
  /** Lifetime, seconds. Default 60. */
  expiresIn?: number;
  created?: number;
  nonce?: string;
}

/** The `Signature-Input`, `Signature` (and `Signature-Agent`) headers signing a request (Web Bot Auth) over `@method`, `@authority`, `@path` and `@query`. */
export async function signRequest(
  key: AgentKey,
  req: { method: string; url: string; headers?: [string, string][] },
  opts: SignOptions = {},
): Promise<Record<string, string>> {
  const headers: [string, string][] = [...(req.headers ?? [])];
  const out: Record<string, string> = {};
  // The request itself, not only its origin: a signature captured on the way is then no
  // good for another method, path or query (`@query` is `?` without one).
  const components = ["@method", "@authority", "@path", "@query"];
  if (opts.signatureAgent !== undefined) {
    headers.push(["signature-agent", opts.signatureAgent]);
    out["signature-agent"] = opts.signatureAgent;
    components.push("signature-agent");
  }
  const created = opts.created ?? Math.floor(Date.now() / 1000);
  const signed = await signMessage(key, { method: req.method, url: req.url, headers }, components, {
    created,
    expires: created + (opts.expiresIn ?? 60),
    nonce: opts.nonce ?? randomId(),
    tag: WEB_BOT_AUTH_TAG,
  });
  out["signature-input"] = signed.signatureInput;
  out.signature = signed.signature;
  return out;
}

/** A `fetch` that presents the agent's token with a fresh proof on every request. */
export function agentFetch(
  token: string,
  key: AgentKey | undefined,
  opts: { proof?: "dpop" | "http-signature"; fetch?: typeof fetch; signatureAgent?: string } = {},
): typeof fetch {
  const inner = opts.fetch ?? globalThis.fetch.bind(globalThis);
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const headers = new Headers(request.headers);
    if (!key) headers.set("authorization", `Bearer ${token}`);
    else if ((opts.proof ?? "dpop") === "dpop") {
      headers.set("authorization", `DPoP ${token}`);
      headers.set("dpop", await dpopProof(key, { htm: request.method, htu: request.url, accessToken: token }));
    } else {
      headers.set("authorization", `Bearer ${token}`);
      const sig = await signRequest(key, { method: request.method, url: request.url }, opts.signatureAgent === undefined ? {} : { signatureAgent: opts.signatureAgent });
      for (const [k, v] of Object.entries(sig)) headers.set(k, v);
    }
    return inner(new Request(request, { headers }));
  }) as typeof fetch;
}
