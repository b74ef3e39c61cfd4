// Delegation (RFC 8693 token exchange) as a receiver sees it: the chain rule a
// verifier applies to a delegated token, as the Rust core's `delegation`. Minting a
// child token, and refusing one that would widen its parent, is the registry's rule
// alone (`POST /v1/token`): an agent asks it through `RegistryClient.exchange`, and the
// registry answers with the token or its refusal (`DELEGATION_WIDENS`,
// `DELEGATION_LOOP`, `SCOPE_INVALID`). This package never re-decides it.

import { VerifyError } from "./errors.js";
import { type AgentClaims, delegationChain } from "./token.js";

/** What a verifier knows revoked or suspended (the registry's state, or a push-event set). */
export interface ChainState {
  revokedJtis: Iterable<string>;
  revokedAgents: Iterable<string>;
  suspendedAgents: Iterable<string>;
}

/** Step 5 for a delegated token: every ancestor token and every agent of the chain must stand. */
export function checkChain(c: AgentClaims, state: ChainState): void {
  const jtis = new Set(state.revokedJtis);
  const revoked = new Set(state.revokedAgents);
  const suspended = new Set(state.suspendedAgents);
  if ([c.jti, ...(c.ancestor_jtis ?? [])].some((j) => jtis.has(j))) throw new VerifyError("TOKEN_REVOKED", "token has been revoked");
  const chain = delegationChain(c);
  if (chain.some((a) => revoked.has(a))) throw new VerifyError("TOKEN_REVOKED", "token has been revoked");
  if (chain.some((a) => suspended.has(a))) throw new VerifyError("AGENT_SUSPENDED", "agent is suspended by its issuer");
}
