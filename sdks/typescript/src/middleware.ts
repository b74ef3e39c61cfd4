// The plain `fetch` handler wrapper (edge runtimes, Bun, Deno, Node's own servers):
// a handler `(request, agent) => Response` behind the receiver.

import { type AgentRequest, headerPairs, Rejection, type Receiver, type VerifiedAgent } from "./receiver.js";

/** The receiver's view of a fetch `Request`. */
export function agentRequest(request: Request): AgentRequest {
  const u = new URL(request.url);
  return { method: request.method, url: u.pathname + u.search, headers: headerPairs(request.headers) };
}

/** Wraps a fetch handler: it runs only for an authenticated agent; refusals are answered as JSON. */
export function withAgent<Args extends unknown[]>(
  receiver: Receiver,
  handler: (request: Request, agent: VerifiedAgent, ...rest: Args) => Response | Promise<Response>,
): (request: Request, ...rest: Args) => Promise<Response> {
  return async (request, ...rest) => {
    let agent: VerifiedAgent;
    try {
      agent = await receiver.authenticate(agentRequest(request));
    } catch (e) {
      if (e instanceof Rejection) return e.toResponse();
      throw e;
    }
    return handler(request, agent, ...rest);
  };
}
