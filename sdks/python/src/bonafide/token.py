"""Agent tokens (`typ agent+jwt`): pipeline steps 1–4 of the registry's verifier, with
the same refusals and wire codes as the Rust core (`crates/core/src/token.rs`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import jws
from ._b64 import b64url_encode
from .errors import (
    AUDIENCE_MISMATCH,
    ISSUER_UNKNOWN,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    TOKEN_NOT_YET_VALID,
    TokenError,
)
from .keys import PublicKey

AGENT_TOKEN_TYP = "agent+jwt"
DEFAULT_MAX_TOKEN_BYTES = 8 * 1024
DEFAULT_LEEWAY_SECS = 60
DEFAULT_MAX_LIFETIME_SECS = 30 * 86_400
MAX_ACT_DEPTH = 8
_I64 = (-(2**63), 2**63 - 1)
_ID = {p: re.compile(rf"{p}[a-z2-7]{{26}}\Z") for p in ("agt_", "tok_", "iss_")}


def is_id(prefix: str, value: Any) -> bool:
    """A Bonafide id: the prefix and 26 lowercase base32 characters."""
    return isinstance(value, str) and _ID[prefix].match(value) is not None


class _Claims(ValueError):
    pass


def _int(claims: Mapping[str, Any], name: str, required: bool = True) -> int | None:
    v = claims.get(name)
    if v is None:
        if required:
            raise _Claims(f"missing field `{name}`")
        return None
    if type(v) is not int or not _I64[0] <= v <= _I64[1]:
        raise _Claims(f"`{name}` is not an integer")
    return v


def _str(claims: Mapping[str, Any], name: str, required: bool = True) -> str | None:
    v = claims.get(name)
    if v is None:
        if required:
            raise _Claims(f"missing field `{name}`")
        return None
    if not isinstance(v, str):
        raise _Claims(f"`{name}` is not a string")
    return v


def _str_list(v: Any, name: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise _Claims(f"`{name}` is not an array of strings")
    return v


def _actor_depth(act: Any, sub: str) -> list[str]:
    """The actors' ids, outermost first, checking the shape (`sub`, `act` only)."""
    out: list[str] = []
    while act is not None:
        if not isinstance(act, dict):
            raise _Claims("`act` is not an object")
        unknown = set(act) - {"sub", "act"}
        if unknown:
            raise _Claims(f"unknown field `{sorted(unknown)[0][:64]}` in `act`")
        if not is_id("agt_", act.get("sub")):
            raise _Claims("`act.sub` is not an agent id")
        out.append(act["sub"])
        if len(out) > MAX_ACT_DEPTH + 1:
            break
        act = act.get("act")
    return out


def check_claims(claims: Mapping[str, Any]) -> None:
    """The claims' types (as the Rust `AgentClaims` deserializes them) and their
    consistency; `TOKEN_INVALID` on failure."""
    try:
        _str(claims, "iss")
        if not is_id("agt_", claims.get("sub")):
            raise _Claims("`sub` is not an agent id")
        aud = claims.get("aud")
        if aud is not None and not isinstance(aud, str):
            _str_list(aud, "aud")
        iat = _int(claims, "iat")
        _int(claims, "nbf", False)
        exp = _int(claims, "exp")
        if not is_id("tok_", claims.get("jti")):
            raise _Claims("`jti` is not a token id")
        agent = claims.get("agent")
        if not isinstance(agent, dict):
            raise _Claims("`agent` is missing or not an object")
        _str(agent, "name")
        _str(agent, "issuer")
        scopes = _str_list(agent.get("scopes"), "agent.scopes")
        _str(agent, "description", False)
        scope = _str(claims, "scope", False)
        _str(claims, "user", False)
        policy_hash = _str(claims, "policy_hash", False)
        cnf = claims.get("cnf")
        if cnf is not None and not (isinstance(cnf, dict) and isinstance(cnf.get("jkt"), str)):
            raise _Claims('`cnf` is not `{"jkt": …}`')
        act = claims.get("act")
        actors = _actor_depth(act, claims["sub"]) if act is not None else None
        jtis = claims.get("ancestor_jtis")
        if jtis is not None and not (isinstance(jtis, list) and all(is_id("tok_", j) for j in jtis)):
            raise _Claims("`ancestor_jtis` is not an array of token ids")
        status = claims.get("status")
        if status is not None:
            if not isinstance(status, dict):
                raise _Claims("`status` is not an object")
            ref = status.get("status_list")
            if ref is not None:
                if not isinstance(ref, dict) or not isinstance(ref.get("uri"), str):
                    raise _Claims("`status.status_list` is not `{idx, uri}`")
                idx = ref.get("idx")
                if type(idx) is not int or not 0 <= idx < 2**64:
                    raise _Claims("`status.status_list.idx` is not an unsigned integer")
        # Consistency (AgentClaims::check_consistent).
        if scope is not None:
            listed = {s for s in scope.split(" ") if s}
            if listed != set(scopes):
                raise _Claims("`scope` does not match `agent.scopes`")
        assert iat is not None and exp is not None
        if exp <= iat:
            raise _Claims("`exp` is not after `iat`")
        has_policy = claims.get("policy") is not None
        if has_policy and policy_hash is None:
            raise _Claims("`policy` without `policy_hash`")
        if not has_policy and policy_hash is not None:
            raise _Claims("`policy_hash` without `policy`")
        if actors is not None or jtis is not None:
            if actors is None:
                raise _Claims("`ancestor_jtis` without `act`")
            if jtis is None:
                raise _Claims("`act` without `ancestor_jtis`")
            if len(actors) > MAX_ACT_DEPTH:
                raise _Claims("`act` is nested too deep")
            if len(jtis) != len(actors):
                raise _Claims("`ancestor_jtis` does not have one entry per `act` level")
            agents = [claims["sub"], *actors]
            if len(set(agents)) != len(agents):
                raise _Claims("`act` names an agent twice in the delegation chain")
            tokens = [claims["jti"], *jtis]
            if len(set(tokens)) != len(tokens):
                raise _Claims("`ancestor_jtis` names a token twice")
    except _Claims as e:
        raise TokenError(TOKEN_INVALID, f"token claims are invalid: {e}") from None


@dataclass(slots=True)
class VerifyOptions:
    """Verification settings (the Rust `VerifyOptions`)."""

    issuers: tuple[str, ...]
    audience: tuple[str, ...] | None = None  # None: the verifier names no audience
    leeway_secs: int = DEFAULT_LEEWAY_SECS
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    max_lifetime_secs: int | None = DEFAULT_MAX_LIFETIME_SECS
    max_json_depth: int = 16


class KeySet:
    """The registry's token keys by thumbprint, with the exact header segments the
    registry writes for each (a token whose header is one of them skips the decode)."""

    def __init__(self, keys: Iterable[PublicKey] = ()) -> None:
        self.keys: dict[str, PublicKey] = {}
        self.headers: dict[str, tuple[jws.Protected, PublicKey]] = {}
        for k in keys:
            self.add(k)

    def add(self, key: PublicKey) -> None:
        self.keys[key.kid] = key
        text = json.dumps({"alg": key.alg, "typ": AGENT_TOKEN_TYP, "kid": key.kid}, separators=(",", ":"))
        header = jws.Protected(alg=key.alg, kid=key.kid, typ=AGENT_TOKEN_TYP)
        self.headers[b64url_encode(text.encode())] = (header, key)

    @classmethod
    def from_jwks(cls, jwks: Any) -> KeySet:
        from .keys import jwks_keys

        return cls(jwks_keys(jwks).values())

    def __len__(self) -> int:
        return len(self.keys)


class UnknownKey(TokenError):
    """No key of the set has the token's `kid` (`TOKEN_INVALID`); a receiver may
    refetch its JWKS once and try again."""

    def __init__(self) -> None:
        super().__init__(TOKEN_INVALID, "no key with this `kid`")


def _key_for(keys: KeySet) -> Any:
    def key_for(header: jws.Protected) -> PublicKey:
        key = keys.keys.get(header.kid)
        if key is None:
            raise UnknownKey()
        return key

    return key_for


def verify(token: str, keys: KeySet, opts: VerifyOptions, now: int) -> dict[str, Any]:
    """Verifies an agent token: size, shape, header, key, signature, claims, times,
    lifetime, audience, issuer. Returns the claims; raises TokenError."""
    try:
        _, _, claims = jws.open_jws(
            token,
            typ=AGENT_TOKEN_TYP,
            key_for=_key_for(keys),
            max_bytes=opts.max_token_bytes,
            max_depth=opts.max_json_depth,
            known=keys.headers,
        )
    except jws.JwsError as e:
        if e.kind == "bad_kid":
            raise UnknownKey() from None
        raise TokenError(TOKEN_INVALID, f"token: {e.message}") from None
    check_claims(claims)
    exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf")
    leeway = opts.leeway_secs
    if now - leeway >= exp:
        raise TokenError(TOKEN_EXPIRED, f"token expired at {exp}")
    if nbf is not None and now + leeway < nbf:
        raise TokenError(TOKEN_NOT_YET_VALID, f"token is not valid before {nbf}")
    if now + leeway < iat:
        raise TokenError(TOKEN_NOT_YET_VALID, f"token is not valid before {iat}")
    if opts.max_lifetime_secs is not None and exp - iat > opts.max_lifetime_secs:
        raise TokenError(
            TOKEN_INVALID,
            f"the token's lifetime (`exp` − `iat`) of {exp - iat} s is over this verifier's "
            f"maximum of {opts.max_lifetime_secs} s (max_token_ttl)",
        )
    aud = claims.get("aud")
    if aud is not None:
        auds = [aud] if isinstance(aud, str) else aud
        if opts.audience is None:
            raise TokenError(
                AUDIENCE_MISMATCH,
                "the token is for named audiences (`aud`): the verifier must name one of them (`audience`)",
            )
        if not any(a in auds for a in opts.audience):
            raise TokenError(
                AUDIENCE_MISMATCH, f"token is not intended for audience `{', '.join(opts.audience)[:128]}`"
            )
    if claims["iss"] not in opts.issuers:
        raise TokenError(ISSUER_UNKNOWN, f"issuer `{claims['iss'][:128]}` is not known")
    return claims


def actors(claims: Mapping[str, Any]) -> list[str]:
    """The delegation chain, root first: `sub`, then each actor up to the current one."""
    chain: list[str] = []
    act = claims.get("act")
    while isinstance(act, dict):
        chain.append(act["sub"])
        act = act.get("act")
    chain.reverse()
    return [claims["sub"], *chain]
