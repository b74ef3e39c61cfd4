"""Errors, each with the registry's stable wire code (`TOKEN_INVALID`, `PROOF_INVALID`…)."""

from __future__ import annotations

# Verify error codes, as the registry's `POST /v1/verify` and the Rust receiver layer
# answer them (crates/core/src/token.rs `ErrorCode`).
TOKEN_INVALID = "TOKEN_INVALID"
TOKEN_EXPIRED = "TOKEN_EXPIRED"
TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
TOKEN_REVOKED = "TOKEN_REVOKED"
AUDIENCE_MISMATCH = "AUDIENCE_MISMATCH"
ISSUER_UNKNOWN = "ISSUER_UNKNOWN"
AGENT_SUSPENDED = "AGENT_SUSPENDED"
AGENT_UNKNOWN = "AGENT_UNKNOWN"
PROOF_REQUIRED = "PROOF_REQUIRED"
PROOF_INVALID = "PROOF_INVALID"
REPLAY = "REPLAY"
# The receiver's own (the Rust layer's) codes.
TOKEN_MISSING = "TOKEN_MISSING"
STATUS_LIST_UNTRUSTED = "STATUS_LIST_UNTRUSTED"
STATUS_LIST_STALE = "STATUS_LIST_STALE"
STATUS_LIST_UNAVAILABLE = "STATUS_LIST_UNAVAILABLE"
REPLAY_CACHE_FULL = "REPLAY_CACHE_FULL"
KEYS_UNAVAILABLE = "KEYS_UNAVAILABLE"
REGISTRY_UNAVAILABLE = "REGISTRY_UNAVAILABLE"


class BonafideError(Exception):
    """Base class of every error this package raises."""


class TokenError(BonafideError):
    """A token (or a proof with it) is refused; `code` is the wire code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"TokenError({self.code!r}, {self.message!r})"


class KeyError_(BonafideError):
    """A key (JWK or PEM) is unusable."""


class RegistryError(BonafideError):
    """The registry answered an error, or could not be reached.

    `status` is the HTTP status (None when there was no answer), `code` the registry's
    error code (`UNAUTHORIZED`, …) when it sent one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id
