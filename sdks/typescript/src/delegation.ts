// Delegation (RFC 8693 token exchange): the narrowing rule a child token obeys, and
// the chain rule a verifier applies to a delegated token, as the Rust core's
// `delegation`. Minting is the registry's (`POST /v1/token`, see
// `RegistryClient.exchange`); the SDK computes the same child claims and refusals so an
// issuer can check a request before sending it, and so the vectors hold it to the rule.

import { VerifyError } from "./errors.js";
import type { Policy } from "./policy/index.js";
import { type Actor, type AgentClaims, delegationChain, MAX_ACT_DEPTH } from "./token.js";

/** The registry's default: at most four hops from the root. */
export const DEFAULT_MAX_DEPTH = 4;
const MAX_SCOPES = 64;
const MAX_SCOPE_LEN = 64;

/** What an exchange asks the child to carry. */
export interface ChildRequest {
  scopes: string[];
  /** `null` keeps the parent's. */
  audience: string[] | null;
  exp: number;
  /** A narrower policy; `null` keeps the parent's. */
  policy: Policy | null;
  /** The actor's key binding, or `null` for a bearer child. */
  cnf: { jkt: string } | null;
}

/** An exchange refused: `code` DELEGATION_WIDENS (with `widened`), DELEGATION_LOOP, SCOPE_INVALID or INVALID_REQUEST. */
export class DelegationError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly widened: string[] = [],
  ) {
    super(message);
    this.name = "DelegationError";
  }
}

function validScope(s: string): boolean {
  if (s.length === 0 || s.length > MAX_SCOPE_LEN) return false;
  const colon = s.includes(":");
  const parts = s.split(colon ? ":" : ".");
  if (parts.length < 2 || parts.length > 4) return false;
  const inner = colon ? /^[a-z0-9][a-z0-9_.-]*$/ : /^[a-z0-9][a-z0-9_-]*$/;
  return parts.every((p) => inner.test(p));
}

/** The dimensions in which `req` would be wider than `parent` (empty: narrower). */
export function widenings(parent: AgentClaims, parentPolicy: Policy | undefined, req: ChildRequest, maxDepth = DEFAULT_MAX_DEPTH): string[] {
  const out: string[] = [];
  if (req.scopes.some((s) => !parent.agent.scopes.includes(s))) out.push("scope");
  if (parent.aud !== undefined && req.audience !== null) {
    const list = Array.isArray(parent.aud) ? parent.aud : [parent.aud];
    if (req.audience.some((a) => !list.includes(a))) out.push("audience");
  }
  if (req.exp > parent.exp) out.push("exp");
  let depth = 0;
  for (let a: Actor | undefined = parent.act; a; a = a.act) depth++;
  if (depth + 1 > Math.min(maxDepth, MAX_ACT_DEPTH)) out.push("depth");
  if (parent.cnf && !req.cnf) out.push("cnf");
  if (req.policy) {
    if (!parentPolicy) out.push("policy");
    else if (req.policy.hash !== parentPolicy.hash) {
      // Narrowing one policy under another is decided by the registry at exchange time.
      throw new DelegationError("POLICY_NARROWING_UNCHECKED", "a child policy under a parent policy is checked by the registry (POST /v1/token)");
    }
  }
  return out;
}

/** The child claims the registry mints for `actor`, or the refusal. */
export function childClaims(
  parent: AgentClaims,
  parentPolicy: Policy | undefined,
  actor: string,
  req: ChildRequest,
  issue: { iss: string; jti: string; iat: number },
  maxDepth = DEFAULT_MAX_DEPTH,
): Record<string, unknown> {
  if (req.scopes.length === 0) throw new DelegationError("SCOPE_INVALID", "at least one scope is required");
  if (req.scopes.length > MAX_SCOPES) throw new DelegationError("SCOPE_INVALID", `at most ${MAX_SCOPES} scopes`);
  const scopes: string[] = [];
  for (const s of req.scopes) {
    if (!validScope(s)) throw new DelegationError("SCOPE_INVALID", `\`${s.slice(0, MAX_SCOPE_LEN + 8)}\` is not a valid scope`);
    if (!scopes.includes(s)) scopes.push(s);
  }
  if (req.audience !== null && req.audience.length === 0) {
    throw new DelegationError("INVALID_REQUEST", "`audience` is empty: name at least one receiver, or omit it");
  }
  if (req.exp <= issue.iat) throw new DelegationError("INVALID_REQUEST", `\`exp\` ${req.exp} is not after the issue time ${issue.iat}`);
  if (delegationChain(parent).includes(actor)) throw new DelegationError("DELEGATION_LOOP", `agent \`${actor}\` is already in the delegation chain`);
  const widened = widenings(parent, parentPolicy, req, maxDepth);
  if (widened.length > 0) throw new DelegationError("DELEGATION_WIDENS", `delegation widens the parent token: ${widened.join(", ")}`, widened);
  const act: Actor = parent.act ? { sub: actor, act: parent.act } : { sub: actor };
  const out: Record<string, unknown> = {
    act,
    agent: { ...parent.agent, scopes },
    ancestor_jtis: [...(parent.ancestor_jtis ?? []), parent.jti],
  };
  const aud = req.audience === null ? parent.aud : req.audience.length === 1 ? req.audience[0] : req.audience;
  if (aud !== undefined) out.aud = aud;
  if (req.cnf) out.cnf = req.cnf;
  out.exp = req.exp;
  out.iat = issue.iat;
  out.iss = issue.iss;
  out.jti = issue.jti;
  out.nbf = parent.nbf === undefined ? issue.iat : Math.max(parent.nbf, issue.iat);
  const policy = req.policy ? req.policy.value : parent.policy;
  const policyHash = req.policy ? req.policy.hash : parent.policy_hash;
  if (policy !== undefined) out.policy = policy;
  if (policyHash !== undefined) out.policy_hash = policyHash;
  out.scope = scopes.join(" ");
  out.sub = parent.sub;
  if (parent.user !== undefined) out.user = parent.user;
  return out;
}

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
