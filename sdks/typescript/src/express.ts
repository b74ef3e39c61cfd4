// Express middleware: `app.use(agentAuth(receiver))`, then `req.agent` (or
// `res.locals.agent`) in handlers. Structural types only, so the package does not
// depend on Express at run time (it is an optional peer dependency).

import { type AgentRequest, Rejection, type Receiver, type VerifiedAgent } from "./receiver.js";

/** The parts of an Express (or Node `http`) request the middleware reads. */
export interface ExpressLikeRequest {
  method?: string;
  originalUrl?: string;
  url?: string;
  rawHeaders?: string[];
  headers: Record<string, string | string[] | undefined>;
  agent?: VerifiedAgent;
}

/** The parts of an Express response the middleware writes. */
export interface ExpressLikeResponse {
  locals?: Record<string, unknown>;
  status(code: number): ExpressLikeResponse;
  set(headers: Record<string, string>): ExpressLikeResponse;
  json(body: unknown): unknown;
}

/** Header pairs of a Node request: `rawHeaders` keeps repeated headers apart (Node merges or drops them in `headers`). */
export function nodeHeaderPairs(req: ExpressLikeRequest): [string, string][] {
  const out: [string, string][] = [];
  const raw = req.rawHeaders;
  if (raw) {
    for (let i = 0; i + 1 < raw.length; i += 2) out.push([(raw[i] as string).toLowerCase(), raw[i + 1] as string]);
    return out;
  }
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.push([k.toLowerCase(), one]);
  }
  return out;
}

/** The receiver's view of a Node request. */
export function nodeAgentRequest(req: ExpressLikeRequest): AgentRequest {
  return { method: req.method ?? "GET", url: req.originalUrl ?? req.url ?? "/", headers: nodeHeaderPairs(req) };
}

/** Express middleware authenticating every request it sees; refusals are answered as JSON. */
export function agentAuth(receiver: Receiver) {
  return (req: ExpressLikeRequest, res: ExpressLikeResponse, next: (err?: unknown) => void): void => {
    receiver.authenticate(nodeAgentRequest(req)).then(
      (agent) => {
        req.agent = agent;
        if (res.locals) res.locals.agent = agent;
        next();
      },
      (e: unknown) => {
        if (e instanceof Rejection) {
          res.status(e.status).set(e.headers()).json(e.body());
          return;
        }
        next(e);
      },
    );
  };
}

export type { VerifiedAgent };
