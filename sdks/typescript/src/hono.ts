// Hono middleware: `app.use("/api/*", agentAuth(receiver))`, then `c.get("agent")`.
// Structural types only: Hono is an optional peer dependency.

import { agentRequest } from "./middleware.js";
import { Rejection, type Receiver, type VerifiedAgent } from "./receiver.js";

/** The parts of a Hono context the middleware uses. */
export interface HonoLikeContext {
  req: { raw: Request };
  set(key: "agent", value: VerifiedAgent): void;
}

/** Variables the middleware sets: type your app as `new Hono<{ Variables: AgentVariables }>()`. */
export type AgentVariables = { agent: VerifiedAgent };

/** Hono middleware authenticating every request it sees; refusals are answered as JSON. */
export function agentAuth(receiver: Receiver) {
  return async (c: HonoLikeContext, next: () => Promise<void>): Promise<Response | undefined> => {
    let agent: VerifiedAgent;
    try {
      agent = await receiver.authenticate(agentRequest(c.req.raw));
    } catch (e) {
      if (e instanceof Rejection) return e.toResponse();
      throw e;
    }
    c.set("agent", agent);
    await next();
    return undefined;
  };
}

export type { VerifiedAgent };
