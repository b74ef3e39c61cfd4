// The registry's HTTP API, for what goes online: `POST /v1/verify` (the registry's
// verdict, revocation and spending included), `POST /v1/simulate`, and the token
// exchange of delegation (`POST /v1/token`).

import { FETCH_TIMEOUT_MS, FetchError, readBounded } from "./http.js";
import { isObject, parse } from "./json.js";

/** An error answer of the registry: its `code`, message, HTTP status and request id. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId?: string,
    readonly body?: unknown,
  ) {
    super(`${message} (${code}, HTTP ${status})`);
    this.name = "ApiError";
  }
}

/** The proof a receiver passes on to `POST /v1/verify`. */
export type VerifyProof =
  | { type: "dpop"; jwt: string; htm: string; htu: string }
  | { type: "http-signature"; method: string; url: string; headers: Record<string, string | string[]> };

/** `POST /v1/verify` body. */
export interface VerifyRequest {
  token: string;
  audience?: string;
  target_resource?: string;
  scopes_requested?: string[];
  action?: string;
  resource?: { type: string; id: string };
  amount?: string | number;
  currency?: string;
  idempotency_key?: string;
  proof?: VerifyProof;
}

/** `POST /v1/verify` answer (the members the SDK reads; the rest are kept as sent). */
export interface VerifyResponse {
  valid: boolean;
  allowed: boolean;
  error?: { code: string; message: string; request_id?: string };
  reason?: string;
  reasons: string[];
  agent?: { id: string; did?: string; name: string; issuer: string; active_scopes: string[] };
  trust_level?: string;
  user?: string;
  expires_at?: string;
  verified_at?: string;
  remaining?: { amount: string; currency: string; period: string; period_ends: string };
  receipt_id?: string;
  audit_index?: number;
  delegation?: { agent_id: string; name?: string }[];
  warnings?: string[];
  [member: string]: unknown;
}

/** Token exchange (RFC 8693) parameters for delegation. */
export interface ExchangeRequest {
  subjectToken: string;
  actorToken: string;
  scope?: string[];
  audience?: string[];
  expiresIn?: number;
  /** The JSON text of a `pol.v0.2` policy. */
  policy?: string;
}

/** Token exchange answer. */
export interface ExchangeResponse {
  access_token: string;
  issued_token_type: string;
  token_type: string;
  expires_in: number;
  scope: string;
  jti: string;
}

const MAX_ANSWER_BYTES = 1024 * 1024;

/** A client of one registry. */
export class RegistryClient {
  readonly url: string;
  private readonly fetchImpl: typeof fetch;

  constructor(
    url: string,
    private readonly apiKey?: string,
    fetchImpl?: typeof fetch,
  ) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new Error(`registry URL \`${url}\` is not a URL`);
    }
    if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error(`registry URL \`${url}\` must be http or https`);
    this.url = url.replace(/\/+$/, "");
    this.fetchImpl = fetchImpl ?? globalThis.fetch.bind(globalThis);
  }

  /** `POST /v1/verify`: the registry's verdict. A `valid: false` answer is returned, not thrown. */
  verify(body: VerifyRequest): Promise<VerifyResponse> {
    return this.json<VerifyResponse>("POST", "/v1/verify", body);
  }

  /** `POST /v1/simulate`: the same answer, nothing recorded or spent. */
  simulate(body: VerifyRequest): Promise<VerifyResponse> {
    return this.json<VerifyResponse>("POST", "/v1/simulate", body);
  }

  /** `POST /v1/token`: a narrower child token for a sub-agent (the issuer's key is the API key). */
  async exchange(req: ExchangeRequest): Promise<ExchangeResponse> {
    const form = new URLSearchParams();
    form.set("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange");
    form.set("subject_token", req.subjectToken);
    form.set("subject_token_type", "urn:ietf:params:oauth:token-type:jwt");
    form.set("actor_token", req.actorToken);
    form.set("actor_token_type", "urn:ietf:params:oauth:token-type:jwt");
    if (req.scope) form.set("scope", req.scope.join(" "));
    for (const a of req.audience ?? []) form.append("audience", a);
    if (req.expiresIn !== undefined) form.set("expires_in", String(req.expiresIn));
    if (req.policy !== undefined) form.set("policy", req.policy);
    return this.request<ExchangeResponse>("POST", "/v1/token", form.toString(), "application/x-www-form-urlencoded");
  }

  /** Any JSON call of the API. */
  json<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.request<T>(method, path, body === undefined ? undefined : JSON.stringify(body), "application/json");
  }

  private async request<T>(method: string, path: string, body: string | undefined, contentType: string): Promise<T> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = contentType;
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    let resp: Response;
    try {
      resp = await this.fetchImpl(`${this.url}${path}`, {
        method,
        headers,
        body,
        redirect: "manual",
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
    } catch (e) {
      throw new FetchError(`${method} ${this.url}${path} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    const bytes = await readBounded(resp, MAX_ANSWER_BYTES);
    let doc: unknown;
    try {
      doc = parse(new TextDecoder().decode(bytes));
    } catch {
      throw new FetchError(`${method} ${path}: the registry answered HTTP ${resp.status} with a body that is not JSON`, resp.status);
    }
    if (resp.status >= 200 && resp.status < 300) return JSON.parse(JSON.stringify(doc)) as T;
    // The API's `{"error":{code,message,request_id}}`, or token exchange's OAuth shape.
    if (isObject(doc) && isObject(doc.error)) {
      const e = doc.error;
      throw new ApiError(resp.status, String(e.code ?? "ERROR"), String(e.message ?? ""), e.request_id as string | undefined, doc);
    }
    if (isObject(doc) && typeof doc.error === "string") {
      throw new ApiError(
        resp.status,
        String(doc.code ?? doc.error),
        String(doc.error_description ?? doc.error),
        doc.request_id as string | undefined,
        doc,
      );
    }
    throw new ApiError(resp.status, "ERROR", `the registry answered HTTP ${resp.status}`);
  }
}
