"""Delegation (RFC 8693 token exchange) as a receiver sees it: a delegated token's
chain, checked against the revocations and suspensions the receiver knows.

Minting a child token, and refusing one that would widen its parent, is the
registry's rule alone (`POST /v1/token`, the Rust core's `delegation` module): an
agent asks for a child through `RegistryClient.exchange_token`, and the registry
answers with the token or its refusal (`DELEGATION_WIDENS`, `DELEGATION_LOOP`,
`SCOPE_INVALID`). This package never re-decides it.

- `RevokedSet`: revocations and suspensions a receiver learned (push events, or its own
  list): a delegated token is refused when its `jti` or any of its `ancestor_jtis` is
  revoked, or any agent of its chain is revoked (`TOKEN_REVOKED`) or suspended
  (`AGENT_SUSPENDED`), as the registry's verify does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import token as token_mod
from .errors import AGENT_SUSPENDED, TOKEN_REVOKED, TokenError


@dataclass
class RevokedSet:
    """Revoked token ids, revoked agents and suspended agents."""

    jtis: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    suspended: set[str] = field(default_factory=set)

    def refusal(self, claims: Mapping[str, Any]) -> TokenError | None:
        """Why a verified token is refused by this set, or None."""
        tokens = [claims["jti"], *(claims.get("ancestor_jtis") or [])]
        if any(t in self.jtis for t in tokens):
            return TokenError(TOKEN_REVOKED, "token has been revoked")
        chain = token_mod.actors(claims)
        if any(a in self.agents for a in chain):
            return TokenError(TOKEN_REVOKED, "token has been revoked")
        if any(a in self.suspended for a in chain):
            return TokenError(AGENT_SUSPENDED, "agent is suspended by its issuer")
        return None
