// Small HTTP helpers over the platform `fetch`: bounded bodies, timeouts, no
// redirects followed (a key or list URL answers itself or not at all).

import { isObject, parse } from "./json.js";
import type { Jwks } from "./keys.js";

/** A fetch that failed (network, status, body); `status` when the server answered. */
export class FetchError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly body?: unknown,
  ) {
    super(message);
    this.name = "FetchError";
  }
}

/** Default time allowed for one request, ms. */
export const FETCH_TIMEOUT_MS = 10_000;
/** Largest JWKS accepted. */
export const MAX_JWKS_BYTES = 1024 * 1024;

/** True for `http://` on a loopback host (where plain HTTP is allowed). */
export function isLoopbackHttp(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.protocol !== "http:") return false;
  const h = u.hostname;
  return h === "localhost" || h === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Refuses a URL that is neither `https://` nor loopback `http://`. */
export function checkFetchUrl(url: string, what: string): void {
  if (!(url.startsWith("https://") || isLoopbackHttp(url))) {
    throw new FetchError(`${what} \`${url.slice(0, 200)}\` must be https (plain http only on loopback)`);
  }
}

/** Reads a response body, refusing more than `max` bytes. */
export async function readBounded(resp: Response, max: number): Promise<Uint8Array> {
  const declared = resp.headers.get("content-length");
  if (declared !== null && Number(declared) > max) throw new FetchError(`the answer is over ${max} bytes`, resp.status);
  if (!resp.body) return new Uint8Array(0);
  const reader = resp.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > max) {
      await reader.cancel();
      throw new FetchError(`the answer is over ${max} bytes`, resp.status);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** GET with a timeout and no redirects. */
export async function get(fetchImpl: typeof fetch, url: string, headers: Record<string, string> = {}): Promise<Response> {
  try {
    return await fetchImpl(url, { headers, redirect: "manual", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (e) {
    throw new FetchError(`GET ${url.slice(0, 200)} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Fetches a JWK Set (`https://`, or `http://` on loopback), at most 1 MiB. */
export async function loadJwks(fetchImpl: typeof fetch, url: string): Promise<Jwks> {
  checkFetchUrl(url, "JWKS URL");
  const resp = await get(fetchImpl, url, { accept: "application/json" });
  if (resp.status !== 200) {
    await resp.body?.cancel();
    throw new FetchError(`GET ${url.slice(0, 200)} answered HTTP ${resp.status}`, resp.status);
  }
  const body = await readBounded(resp, MAX_JWKS_BYTES);
  let doc: unknown;
  try {
    doc = parse(new TextDecoder().decode(body));
  } catch (e) {
    throw new FetchError(`the JWKS at ${url.slice(0, 200)} is not JSON: ${(e as Error).message}`, 200);
  }
  if (!isObject(doc) || !Array.isArray(doc.keys)) throw new FetchError(`the JWKS at ${url.slice(0, 200)} has no \`keys\` array`, 200);
  return doc as unknown as Jwks;
}
