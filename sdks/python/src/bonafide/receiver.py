"""The receiver side: authenticate every request an agent makes to your API, and hand
the handler a `VerifiedAgent`. The same rules as the Rust receiver layer
(`crates/client/src/receiver`), first failure deciding (401 with
`{"error":{"code","message"}}` and a `WWW-Authenticate` challenge, unless noted):

1. **Token**: `X-Agent-Token`, else `Authorization: DPoP …` or `Authorization: Bearer
   …`, each header once (`TOKEN_MISSING`, `TOKEN_INVALID`). With `X-Agent-Token`,
   `Authorization` is the service's own and is not read.
2. **Offline**: the token is verified with the registry's JWKS (cached; refetched at
   once for an unknown `kid`, at most every `jwks_min_refetch_s`, and refreshed every
   `jwks_refresh_s`), then its policy hash; then its status list entry (`TOKEN_REVOKED`,
   `AGENT_SUSPENDED`; 401 `STATUS_LIST_UNTRUSTED`; 503 `STATUS_LIST_STALE` or
   `STATUS_LIST_UNAVAILABLE` unless failing open).
3. **Proof of possession** for a bound token (`cnf.jkt`): a DPoP proof (`Authorization:
   DPoP` or `X-Agent-Token` with a `DPoP` header; `htu` = `public_base_url` + path), or
   an HTTP message signature (Web Bot Auth, `keyid` = `cnf.jkt`, `nonce` required, over
   `public_base_url` + path and query, the agent's key from the registry's key
   directory or your resolver); neither: `PROOF_REQUIRED`. A failed proof is
   `PROOF_INVALID`, a reused one `REPLAY` (this process's replay cache; full: 503
   `REPLAY_CACHE_FULL`). An unbound token with the DPoP scheme is `PROOF_INVALID`;
   unbound tokens are otherwise bearer tokens unless `require_binding`.
4. **Online**: steps 2–3 are the registry's (`POST /v1/verify` with the token and the
   proof); an unreachable registry, a 5xx or a refusal of the receiver's own key is a
   503 `REGISTRY_UNAVAILABLE`, never a pass.

The `Host` header is never used: proofs are checked against `public_base_url`, the
origin agents address (without it only unbound tokens pass)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import httpx

from . import dpop, httpsig, jws, token
from . import policy as policy_mod
from ._io import Fetch, Gen, Response, check_fetch_url, new_async_client, new_sync_client, run_async, run_sync
from .delegation import RevokedSet
from .errors import (
    KEYS_UNAVAILABLE,
    PROOF_INVALID,
    PROOF_REQUIRED,
    REGISTRY_UNAVAILABLE,
    REPLAY,
    REPLAY_CACHE_FULL,
    TOKEN_INVALID,
    TOKEN_MISSING,
    KeyError_,
    TokenError,
)
from .keys import PublicKey, thumbprint
from .policy import Decision, Policy
from .status import StatusCheck, StatusError, StatusListConfig, StatusLists

DPOP_ALGS = "EdDSA ES256 RS256"
DEFAULT_REPLAY_CAPACITY = 1_000_000
MAX_PROOF_KEYS = 10_000
MAX_CACHED_AGENTS = 10_000
DIRECTORY_MIN_REFETCH_S = 10.0
JWKS_PATH = "/.well-known/jwks.json"
# A header value that is not visible ASCII (tab allowed), as HTTP libraries read it.
_NOT_VISIBLE = re.compile("[^\t\x20-\x7e]")

AgentKeyResolver = Callable[[str, str], PublicKey | None]
"""(agent id, jkt) → the agent's public key with that thumbprint, or None."""


class Rejection(Exception):
    """Why a request was refused: an HTTP status (401, or 503 when the receiver cannot
    decide), a stable code, a message, and the `WWW-Authenticate` challenge."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        challenge: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status = status
        self.code = code
        self.message = message
        self.challenge = challenge
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    def headers(self) -> list[tuple[str, str]]:
        out = [("content-type", "application/json"), ("cache-control", "no-store")]
        if self.challenge is not None:
            out.append(("www-authenticate", self.challenge))
        if self.retry_after is not None:
            out.append(("retry-after", str(self.retry_after)))
        return out


def _unauthorized(scheme: str, oauth_error: str, code: str, message: str) -> Rejection:
    challenge = (
        f'DPoP error="{oauth_error}", algs="{DPOP_ALGS}"' if scheme == "dpop" else f'Bearer error="{oauth_error}"'
    )
    return Rejection(401, code, message, challenge)


def _token_rejection(scheme: str, e: TokenError) -> Rejection:
    return _unauthorized(scheme, "invalid_token", e.code, e.message)


def _proof(scheme: str, code: str, message: str) -> Rejection:
    return _unauthorized(scheme, "invalid_dpop_proof" if scheme == "dpop" else "invalid_token", code, message)


def _unavailable(code: str, message: str) -> Rejection:
    return Rejection(503, code, message, retry_after=1)


@dataclass(frozen=True, slots=True)
class VerifiedAgent:
    """The agent behind a request that passed."""

    agent_id: str  # `sub`: whose authority is used (the root of a delegation)
    actor: str  # the agent presenting the token (the current `act.sub`, else `sub`)
    name: str
    issuer: str  # offline: the verified `iss`; online: the registry's name for the issuer
    scopes: tuple[str, ...]
    user: str | None
    claims: Mapping[str, Any] | None  # offline only
    proof: str | None  # "dpop", "http-signature", or None for a bearer token
    bound_key: str | None  # `cnf.jkt` (offline)
    delegation: tuple[str, ...]  # root first
    revocation_checked: bool
    status_list: StatusCheck | None = None
    policy: Policy | None = None  # offline, a token's consent policy
    trust_level: str | None = None  # online: `registered` or `domain_verified`
    answer: Mapping[str, Any] | None = field(default=None, repr=False)  # online: the registry's

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def policy_decision(
        self,
        *,
        action: str,
        resource: tuple[str, str] | None = None,
        amount: Any = None,
        currency: str | None = None,
        now: datetime | None = None,
    ) -> Decision | None:
        """What the token's policy says about a request, offline and for display only:
        the budget spent so far is the registry's, so this assumes nothing was spent.
        Spending (and the real decision) goes through the registry: `POST /v1/verify`
        with `action`, `amount` (`RegistryClient.verify`). None without a policy."""
        if self.policy is None:
            return None
        money = policy_mod.money_from_json(amount, currency) if amount is not None else None
        res = policy_mod.Resource(resource[0], resource[1]) if resource is not None else None
        return self.policy.evaluate(
            action=action, resource=res, money=money, now=now or datetime.now(timezone.utc), spent_in_period=Decimal(0)
        )


class ReplayCache:
    """Proofs seen, by SHA-256 of (kind, key id, jti/nonce), each until the last second
    its checks would still accept it; full of live proofs: refuse (never evict one)."""

    def __init__(self, capacity: int = DEFAULT_REPLAY_CAPACITY) -> None:
        self.capacity = max(1, capacity)
        self._seen: dict[bytes, int] = {}
        self._last_sweep = 0
        self.sweeps = 0  # passes over the whole cache (a metric)
        self._lock = threading.Lock()

    def claim(self, kind: int, key_id: str, unique: str, last_valid: int, now: int) -> str | None:
        """None if claimed now; `REPLAY` or `REPLAY_CACHE_FULL` otherwise."""
        k = hashlib.sha256(
            bytes([kind])
            + len(key_id).to_bytes(8, "big")
            + key_id.encode()
            + len(unique).to_bytes(8, "big")
            + unique.encode()
        ).digest()
        with self._lock:
            until = self._seen.get(k)
            if until is not None and until >= now:
                return REPLAY
            # Sweep when half full, at most once a second: entries expire by the second
            # and none is inserted already expired, so a second pass within the same
            # second frees nothing (a full cache under a flood would otherwise pay a
            # whole pass, under the lock, for every request).
            if len(self._seen) >= self.capacity // 2 and self._last_sweep < now:
                self._seen = {key: u for key, u in self._seen.items() if u >= now}
                self._last_sweep = now
                self.sweeps += 1
            if len(self._seen) >= self.capacity:
                return REPLAY_CACHE_FULL
            self._seen[k] = last_valid
            return None

    def __len__(self) -> int:
        return len(self._seen)


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """How a receiver verifies. Build it with `ReceiverConfig.offline(registry_url)` or
    `ReceiverConfig.online(registry_url, api_key)`, then `dataclasses.replace` or the
    keyword arguments of those constructors."""

    issuers: tuple[str, ...]
    online_registry: str | None = None  # set: online mode
    api_key: str | None = None  # online: a receiver key (`bfk_rcv_…`), sent as a bearer
    jwks_url: str | None = None
    jwks: Mapping[str, Any] | None = None  # a static JWKS instead of a URL
    public_base_url: str | None = None
    audience: str | None = None
    leeway_s: int = token.DEFAULT_LEEWAY_SECS
    max_token_bytes: int = token.DEFAULT_MAX_TOKEN_BYTES
    max_token_ttl_s: int = token.DEFAULT_MAX_LIFETIME_SECS
    accept_dpop: bool = True
    accept_http_signature: bool = True
    require_binding: bool = False
    proof_max_age_s: int = dpop.DEFAULT_MAX_AGE_SECS
    replay_capacity: int = DEFAULT_REPLAY_CAPACITY
    agent_keys_registry: str | None = None  # fetch agents' key directories here
    agent_keys_ttl_s: float = 300.0
    agent_key_resolver: AgentKeyResolver | None = None
    status_lists: StatusListConfig | None = None
    revoked: RevokedSet | None = None  # revocations learned from push events, consulted offline
    jwks_refresh_s: float = 300.0
    jwks_min_refetch_s: float = 10.0

    @classmethod
    def offline(
        cls,
        registry_url: str,
        *,
        public_base_url: str | None = None,
        audience: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        agent_keys_from_registry: bool = True,
        status_lists: bool | StatusListConfig = True,
        **kw: Any,
    ) -> ReceiverConfig:
        """Trust tokens `registry_url` signed, verified with its JWKS (fetched and kept
        fresh; or `jwks`, a static one), revocation through its status lists (with a
        JWKS URL, unless `status_lists=False`), agents' keys for message signatures
        from its key directories."""
        base = registry_url.rstrip("/")
        sl: StatusListConfig | None
        if isinstance(status_lists, StatusListConfig):
            sl = status_lists
        elif status_lists and jwks is None:
            sl = StatusListConfig.for_registry(base)
        else:
            sl = None
        return cls(
            issuers=(base,),
            jwks_url=None if jwks is not None else base + JWKS_PATH,
            jwks=jwks,
            public_base_url=public_base_url,
            audience=audience,
            agent_keys_registry=base if agent_keys_from_registry else None,
            status_lists=sl,
            **kw,
        )

    @classmethod
    def online(
        cls,
        registry_url: str,
        api_key: str | None = None,
        *,
        public_base_url: str | None = None,
        audience: str | None = None,
        **kw: Any,
    ) -> ReceiverConfig:
        """Ask the registry (`POST /v1/verify`) about every request: revocation takes
        effect at once, replays are refused across every receiver, and an unreachable
        registry fails closed (503)."""
        base = registry_url.rstrip("/")
        return cls(
            issuers=(base,),
            online_registry=base,
            api_key=api_key,
            public_base_url=public_base_url,
            audience=audience,
            **kw,
        )


@dataclass(frozen=True, slots=True)
class Request:
    """What the receiver looks at: method, path and query as received (the query
    without `?`, None if absent), header (name, value) pairs in order."""

    method: str
    path: str
    query: str | None
    headers: Sequence[tuple[str, str]]
    _by_name: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for k, v in self.headers:
            self._by_name.setdefault(k.lower(), []).append(v)

    def all(self, name: str) -> list[str]:
        """Every value of header `name` (lowercase), in order."""
        return self._by_name.get(name, [])


class _Core:
    """The receiver's rules and caches, network access yielded (see `_io`)."""

    def __init__(self, config: ReceiverConfig) -> None:
        base = config.public_base_url
        if base is not None:
            base = base.rstrip("/")
            if "?" in base or "#" in base:
                raise ValueError(f"public_base_url `{config.public_base_url}` has a query or fragment")
            dpop.normalize_htu(base)
        if config.leeway_s < 0 or config.proof_max_age_s <= 0 or config.max_token_ttl_s <= 0:
            raise ValueError("leeway must be ≥ 0, and proof_max_age_s and max_token_ttl_s > 0")
        if config.online_registry is None:
            if config.jwks is None and config.jwks_url is None:
                raise ValueError("offline mode needs a JWKS URL or a static JWKS")
            if config.jwks_url is not None:
                check_fetch_url(config.jwks_url)
        else:
            check_fetch_url(config.online_registry)
        if config.agent_keys_registry is not None:
            check_fetch_url(config.agent_keys_registry)
        self.config = config
        self.base_url = base
        self.opts = token.VerifyOptions(
            issuers=config.issuers,
            audience=(config.audience,) if config.audience is not None else None,
            leeway_secs=config.leeway_s,
            max_token_bytes=config.max_token_bytes,
            max_lifetime_secs=config.max_token_ttl_s,
        )
        self.keys = token.KeySet.from_jwks(config.jwks) if config.jwks is not None else token.KeySet()
        self.jwks_fetched: float | None = None  # monotonic time of the last fetch (tried)
        self.jwks_loaded = config.jwks is not None
        self.jwks_error = "not fetched yet"
        self.replay = ReplayCache(config.replay_capacity)
        self.status = (
            StatusLists(config.status_lists)
            if config.status_lists is not None and config.online_registry is None
            else None
        )
        self.proof_keys: dict[str, PublicKey] = {}
        self.proof_headers: dict[str, tuple[jws.Protected, PublicKey]] = {}
        self.directories: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self.policies: dict[str, Policy] = {}

    # ---- JWKS ----------------------------------------------------------------------

    def fetch_jwks(self) -> Gen[str | None]:
        """Fetches the JWKS now (None, or why it failed; the old keys stay)."""
        url = self.config.jwks_url
        if url is None:
            return None
        self.jwks_fetched = time.monotonic()
        resp = yield Fetch("GET", url, {"accept": "application/json"})
        assert isinstance(resp, Response)
        if resp.status != 200:
            return f"cannot fetch the JWKS at {url}: {resp.error or f'HTTP {resp.status}'}"
        try:
            keys = token.KeySet.from_jwks(json.loads(resp.body))
        except (ValueError, KeyError_) as e:
            return f"the JWKS at {url} is not usable: {e}"
        self.keys = keys
        self.jwks_loaded = True
        return None

    def _jwks_age(self) -> float:
        return float("inf") if self.jwks_fetched is None else time.monotonic() - self.jwks_fetched

    def verify_token(self, presented: str, scheme: str, now: int) -> Gen[dict[str, Any]]:
        cfg = self.config
        if cfg.jwks_url is not None and not self.jwks_loaded:
            # No keys yet: fetch, but at most once per `jwks_min_refetch_s` (else every
            # request, whatever it carries, would fetch while the registry is down).
            if self._jwks_age() < cfg.jwks_min_refetch_s:
                raise _unavailable(
                    KEYS_UNAVAILABLE, f"the JWKS could not be fetched ({self.jwks_error}); retrying shortly"
                )
            err = yield from self.fetch_jwks()
            if err is not None:
                self.jwks_error = err
                raise _unavailable(KEYS_UNAVAILABLE, err)
        elif cfg.jwks_url is not None and self._jwks_age() >= cfg.jwks_refresh_s:
            # Kept simple: the refresh runs in this request (a failure keeps the keys).
            yield from self.fetch_jwks()
        try:
            claims = token.verify(presented, self.keys, self.opts, now)
        except token.UnknownKey:
            if cfg.jwks_url is None or self._jwks_age() < cfg.jwks_min_refetch_s:
                raise _token_rejection(scheme, TokenError(TOKEN_INVALID, "no key with this `kid`")) from None
            err = yield from self.fetch_jwks()
            if err is not None:
                raise _unavailable(
                    KEYS_UNAVAILABLE, f"the token's key is not cached and the JWKS cannot be fetched: {err}"
                ) from None
            try:
                claims = token.verify(presented, self.keys, self.opts, now)
            except TokenError as e:
                raise _token_rejection(scheme, e) from None
        except TokenError as e:
            raise _token_rejection(scheme, e) from None
        if cfg.revoked is not None:
            refusal = cfg.revoked.refusal(claims)
            if refusal is not None:
                raise _token_rejection(scheme, refusal)
        return claims

    def policy_of(self, claims: Mapping[str, Any], scheme: str) -> Policy | None:
        claimed = claims.get("policy_hash")
        if claims.get("policy") is None or claimed is None:
            return None
        cached = self.policies.get(claimed)
        if cached is not None and cached.value == claims["policy"]:
            return cached
        try:
            p = policy_mod.policy_of(dict(claims))
        except policy_mod.PolicyError as e:
            raise _token_rejection(
                scheme, TokenError(TOKEN_INVALID, f"token claims are invalid: `policy` is invalid: {e}")
            ) from None
        if p is not None:
            if len(self.policies) >= 1024:
                self.policies.clear()
            self.policies[claimed] = p
        return p

    # ---- the request ---------------------------------------------------------------

    @staticmethod
    def presented(req: Request) -> tuple[str, str]:
        """(token, scheme) with scheme `dpop`, `bearer` or `agent-header`."""

        def bad(m: str) -> Rejection:
            return _unauthorized("bearer", "invalid_request", TOKEN_INVALID, m)

        def one(name: str) -> str | None:
            values = req.all(name)
            if not values:
                return None
            if len(values) > 1:
                raise bad(f"more than one `{name}` header")
            v = values[0]
            if _NOT_VISIBLE.search(v):
                raise bad(f"`{name}` is not visible ASCII")
            return v.strip()

        agent_header = one("x-agent-token")
        if agent_header is not None:
            if not agent_header:
                raise bad("`X-Agent-Token` is empty")
            return agent_header, ("dpop" if req.all("dpop") else "agent-header")
        auth = one("authorization")
        if auth is not None:
            scheme_text, _, rest = auth.partition(" ")
            scheme = {"dpop": "dpop", "bearer": "bearer"}.get(scheme_text.lower())
            if scheme is not None:
                tok = rest.strip()
                if not tok:
                    raise bad("`Authorization` carries no token")
                return tok, scheme
        r = Rejection(
            401,
            TOKEN_MISSING,
            "no agent token: send `Authorization: DPoP <token>` with a `DPoP` proof, "
            "`Authorization: Bearer <token>` or `X-Agent-Token: <token>`",
            f'DPoP algs="{DPOP_ALGS}", Bearer',
        )
        raise r

    def public_url(self, req: Request, with_query: bool) -> str | None:
        if self.base_url is None:
            return None
        path = req.path or "/"
        if with_query and req.query is not None:
            return f"{self.base_url}{path}?{req.query}"
        return f"{self.base_url}{path}"

    def authenticate(self, req: Request) -> Gen[VerifiedAgent]:
        tok, scheme = self.presented(req)
        if self.config.online_registry is not None:
            return (yield from self.online(req, tok, scheme))
        now_ms = int(time.time() * 1000)
        now = now_ms // 1000
        claims = yield from self.verify_token(tok, scheme, now)
        pol = self.policy_of(claims, scheme)
        status: StatusCheck | None = None
        if self.status is not None:
            # Before the proof: a revoked token does not use up its proof.
            try:
                status = yield from self.status.check(claims, now_ms)
            except TokenError as e:
                raise _token_rejection(scheme, e) from None
            except StatusError as e:
                if e.refusal:
                    raise _unauthorized(scheme, "invalid_token", e.code, e.message) from None
                raise _unavailable(e.code, e.message) from None
        proof = yield from self.check_proof(req, tok, scheme, claims, now)
        chain = token.actors(claims)
        cnf = claims.get("cnf")
        return VerifiedAgent(
            agent_id=claims["sub"],
            actor=chain[-1],
            name=claims["agent"]["name"],
            issuer=claims["iss"],
            scopes=tuple(claims["agent"]["scopes"]),
            user=claims.get("user"),
            claims=claims,
            proof=proof,
            bound_key=cnf["jkt"] if cnf is not None else None,
            delegation=tuple(chain),
            revocation_checked=status is not None and status.revocation_checked,
            status_list=status,
            policy=pol,
        )

    def check_proof(self, req: Request, tok: str, scheme: str, claims: Mapping[str, Any], now: int) -> Gen[str | None]:
        cfg = self.config
        cnf = claims.get("cnf")
        if cnf is None:
            if scheme == "dpop":
                raise _proof(
                    scheme, PROOF_INVALID, "the token is not bound to a key (no `cnf.jkt`): present it as `Bearer`"
                )
            if cfg.require_binding:
                raise _unauthorized(
                    scheme,
                    "invalid_token",
                    PROOF_REQUIRED,
                    "this receiver accepts only key-bound tokens with a proof of possession",
                )
            return None
        jkt = cnf["jkt"]
        if scheme == "dpop":
            if not cfg.accept_dpop:
                raise _proof(scheme, PROOF_INVALID, "this receiver does not accept DPoP proofs")
            self.check_dpop(req, tok, jkt, now)
            return "dpop"
        if cfg.accept_http_signature and req.all("signature-input"):
            yield from self.check_signature(req, scheme, claims, jkt, now)
            return "http-signature"
        # RFC 9449 §7.1: a DPoP-bound token sent as a bearer token.
        raise _unauthorized(
            "dpop",
            "invalid_token",
            PROOF_REQUIRED,
            "the token is bound to a key (`cnf.jkt`): send it as `Authorization: DPoP` with a `DPoP` proof, "
            "or sign the request (HTTP message signature)",
        )

    def no_base(self, scheme: str) -> Rejection:
        return _proof(scheme, PROOF_INVALID, "this receiver cannot check proofs: it has no public base URL configured")

    def check_dpop(self, req: Request, tok: str, jkt: str, now: int) -> None:
        scheme = "dpop"
        proofs = req.all("dpop")
        if not proofs:
            raise _proof(scheme, PROOF_REQUIRED, "`Authorization: DPoP` needs a `DPoP` proof header")
        if len(proofs) > 1:
            raise _proof(scheme, PROOF_INVALID, "more than one `DPoP` header")
        proof = proofs[0]
        if not proof.isascii():
            raise _proof(scheme, PROOF_INVALID, "`DPoP` is not visible ASCII")
        htu = self.public_url(req, False)
        if htu is None:
            raise self.no_base(scheme)
        cached = self.proof_keys.get(jkt)
        try:
            verified = dpop.verify(
                proof.strip(),
                htm=req.method,
                htu=htu,
                jkt=jkt,
                access_token=tok,
                now=now,
                max_age=self.config.proof_max_age_s,
                leeway=self.config.leeway_s,
                known_key=cached,
                header_cache=self.proof_headers,
            )
        except TokenError as e:
            raise _proof(scheme, PROOF_INVALID, e.message) from None
        if cached is None:
            key = dpop.proof_key(proof.strip())
            if key is not None:
                if len(self.proof_keys) >= MAX_PROOF_KEYS:
                    self.proof_keys.clear()
                self.proof_keys[jkt] = key
        self.claim(scheme, 1, jkt, verified.jti, verified.replay_until, now)

    def claim(self, scheme: str, kind: int, key_id: str, unique: str, last_valid: int, now: int) -> None:
        outcome = self.replay.claim(kind, key_id, unique, last_valid, now)
        if outcome == REPLAY:
            raise _proof(scheme, REPLAY, "this proof has been used before")
        if outcome == REPLAY_CACHE_FULL:
            raise _unavailable(REPLAY_CACHE_FULL, "too many recent proofs to remember; try again shortly")

    def check_signature(self, req: Request, scheme: str, claims: Mapping[str, Any], jkt: str, now: int) -> Gen[None]:
        url = self.public_url(req, True)
        if url is None:
            raise self.no_base(scheme)
        agent = token.actors(claims)[-1]
        key = yield from self.agent_key(scheme, agent, jkt)
        try:
            verified = httpsig.verify(
                method=req.method,
                url=url,
                headers=list(req.headers),
                key_for=lambda keyid: key if keyid == jkt else None,
                now=now,
                leeway=self.config.leeway_s,
                max_age=self.config.proof_max_age_s,
                require_nonce=True,
            )
        except httpsig.HttpSigError as e:
            if e.kind == "unknown_key":
                raise _proof(
                    scheme,
                    PROOF_INVALID,
                    "the signature's `keyid` is not the key the token is bound to (`cnf.jkt`)",
                ) from None
            raise _proof(scheme, PROOF_INVALID, e.message) from None
        self.claim(scheme, 2, verified.keyid, verified.nonce or "", verified.replay_until, now)

    def agent_key(self, scheme: str, agent: str, jkt: str) -> Gen[PublicKey]:
        def not_found() -> Rejection:
            return _proof(
                scheme, PROOF_INVALID, f"no public key of agent `{agent}` has the thumbprint the token is bound to"
            )

        cfg = self.config
        if cfg.agent_key_resolver is not None:
            key = cfg.agent_key_resolver(agent, jkt)
            if key is None or key.kid != jkt:
                raise not_found()
            return key
        if cfg.agent_keys_registry is None:
            raise _proof(
                scheme,
                PROOF_INVALID,
                "this receiver has no source of agent keys: message signatures cannot be checked (use DPoP)",
            )

        def find(keys: Iterable[dict[str, Any]]) -> PublicKey | None:
            for k in keys:
                try:
                    if thumbprint(k) == jkt:
                        return PublicKey.from_jwk(k)
                except KeyError_:
                    continue
            return None

        cached = self.directories.get(agent)
        if cached is not None:
            age = time.monotonic() - cached[0]
            found = find(cached[1])
            if age < cfg.agent_keys_ttl_s and found is not None:
                return found
            if age < DIRECTORY_MIN_REFETCH_S:
                if found is None:
                    raise not_found()
                return found
        url = f"{cfg.agent_keys_registry}/agents/{agent}{httpsig.DIRECTORY_PATH}"
        resp = yield Fetch("GET", url, {"accept": f"{httpsig.DIRECTORY_MEDIA_TYPE}, application/json"})
        assert isinstance(resp, Response)
        keys: list[dict[str, Any]]
        if resp.status == 0 or resp.status >= 500:
            raise _unavailable(
                KEYS_UNAVAILABLE,
                f"cannot fetch agent `{agent}`'s key directory: {resp.error or f'HTTP {resp.status}'}",
            )
        try:
            body = json.loads(resp.body) if resp.status == 200 else {}
            keys = [k for k in body.get("keys", []) if isinstance(k, dict)]
        except (ValueError, AttributeError):
            keys = []  # 404 and friends: remember "no keys" for a short while too
        if len(self.directories) >= MAX_CACHED_AGENTS:
            self.directories.clear()
        self.directories[agent] = (time.monotonic(), keys)
        found = find(keys)
        if found is None:
            raise not_found()
        return found

    # ---- online --------------------------------------------------------------------

    def online(self, req: Request, tok: str, scheme: str) -> Gen[VerifiedAgent]:
        body: dict[str, Any] = {"token": tok}
        if self.config.audience is not None:
            body["audience"] = self.config.audience
        proof_kind: str | None = None
        if scheme == "dpop":
            proofs = req.all("dpop")
            if len(proofs) > 1:
                raise _proof(scheme, PROOF_INVALID, "more than one `DPoP` header")
            if not proofs:
                raise _proof(scheme, PROOF_REQUIRED, "`Authorization: DPoP` needs a `DPoP` proof header")
            if not proofs[0].isascii():
                raise _proof(scheme, PROOF_INVALID, "`DPoP` is not visible ASCII")
            htu = self.public_url(req, False)
            if htu is None:
                raise self.no_base(scheme)
            body["proof"] = {"type": "dpop", "jwt": proofs[0].strip(), "htm": req.method, "htu": htu}
            proof_kind = "dpop"
        elif req.all("signature-input"):
            url = self.public_url(req, True)
            if url is None:
                raise self.no_base(scheme)
            body["proof"] = {
                "type": "http-signature",
                "method": req.method,
                "url": url,
                "headers": _signature_headers(req),
            }
            proof_kind = "http-signature"
        resp = yield from self._post_verify(body)
        err = _api_error(resp)
        if proof_kind == "http-signature" and err is not None and err[1] == "PROOF_NOT_APPLICABLE":
            # An unbound token on a signed request: ignored, as offline.
            del body["proof"]
            proof_kind = None
            resp = yield from self._post_verify(body)
            err = _api_error(resp)
        if err is not None:
            status, code, message = err
            if code == "PROOF_NOT_APPLICABLE":
                raise _proof(scheme, PROOF_INVALID, message)
            if status in (400, 413, 422):
                raise _unauthorized(scheme, "invalid_token", code, message)
            raise _unavailable(REGISTRY_UNAVAILABLE, f"the registry cannot verify this request now: {message}")
        return _online_agent(scheme, resp, proof_kind)

    def _post_verify(self, body: dict[str, Any]) -> Gen[Response]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.config.api_key is not None:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        resp = yield Fetch("POST", f"{self.config.online_registry}/v1/verify", headers, json.dumps(body).encode())
        assert isinstance(resp, Response)
        return resp


def _signature_headers(req: Request) -> dict[str, str]:
    """`Signature`, `Signature-Input`, `Signature-Agent` and every header the
    `Signature-Input` names (lowercase), each combined."""
    names = ["signature", "signature-input", httpsig.SIGNATURE_AGENT]
    for v in req.all("signature-input"):
        names.extend(n.lower() for n in v.split('"')[1::2] if not n.startswith("@"))
    out: dict[str, str] = {}
    for n in names:
        values = req.all(n)
        if values and n not in out:
            out[n] = ", ".join(values)
    return out


def _api_error(resp: Response) -> tuple[int, str, str] | None:
    """(status, code, message) of an answer that is not a 200 verify answer."""
    if resp.status == 0:
        return (0, REGISTRY_UNAVAILABLE, resp.error or "no answer")
    if resp.status == 200:
        return None
    code, message = f"HTTP_{resp.status}", f"the registry answered HTTP {resp.status}"
    try:
        err = json.loads(resp.body).get("error")
        if isinstance(err, dict):
            code, message = str(err.get("code", code)), str(err.get("message", message))
    except (ValueError, AttributeError):
        pass
    return (resp.status, code, message)


def _online_agent(scheme: str, resp: Response, proof_kind: str | None) -> VerifiedAgent:
    def malformed() -> Rejection:
        return _unavailable(REGISTRY_UNAVAILABLE, "the registry's verify answer lacks the agent")

    try:
        answer = json.loads(resp.body)
    except ValueError:
        raise malformed() from None
    if not isinstance(answer, dict):
        raise malformed()
    if answer.get("valid") is not True:
        raw_err = answer.get("error")
        err: dict[str, Any] = raw_err if isinstance(raw_err, dict) else {}
        code = str(err.get("code", TOKEN_INVALID))
        message = str(err.get("message", "the registry refused the token without saying why"))
        oauth = (
            "invalid_dpop_proof"
            if code in (PROOF_REQUIRED, PROOF_INVALID, REPLAY) and scheme == "dpop"
            else "invalid_token"
        )
        raise _unauthorized(scheme, oauth, code, message)
    agent = answer.get("agent")
    if not isinstance(agent, dict) or not token.is_id("agt_", agent.get("id")):
        raise malformed()
    chain: list[str] = []
    for hop in answer.get("delegation") or []:
        hop_id = hop.get("agent_id") if isinstance(hop, dict) else None
        if not token.is_id("agt_", hop_id):
            raise malformed()
        chain.append(str(hop_id))
    delegation = tuple(chain) if chain else (agent["id"],)
    return VerifiedAgent(
        agent_id=agent["id"],
        actor=delegation[-1],
        name=str(agent.get("name", "")),
        issuer=str(agent.get("issuer", "")),
        scopes=tuple(agent.get("active_scopes") or agent.get("scopes") or ()),
        user=answer.get("user"),
        claims=None,
        proof=proof_kind,
        bound_key=None,
        delegation=delegation,
        revocation_checked=True,
        trust_level=answer.get("trust_level"),
        answer=answer,
    )


class Receiver:
    """A receiver for synchronous servers (WSGI: Flask…). Thread-safe."""

    def __init__(self, config: ReceiverConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self._core = _Core(config)
        self._client = client or new_sync_client()

    def start(self) -> None:
        """Fetches the JWKS now (offline), raising if it cannot: a receiver without keys
        verifies nothing. Optional: the first request does it otherwise."""
        err = run_sync(self._core.fetch_jwks(), self._client)
        if err is not None:
            raise RuntimeError(err)

    def authenticate(
        self, method: str, path: str, query: str | None, headers: Iterable[tuple[str, str]]
    ) -> VerifiedAgent:
        """Authenticates one request; raises Rejection."""
        return run_sync(self._core.authenticate(Request(method, path, query, list(headers))), self._client)

    def close(self) -> None:
        self._client.close()


class AsyncReceiver:
    """A receiver for asyncio servers (ASGI: FastAPI, Starlette…)."""

    def __init__(self, config: ReceiverConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._core = _Core(config)
        self._client = client or new_async_client()

    async def start(self) -> None:
        err = await run_async(self._core.fetch_jwks(), self._client)
        if err is not None:
            raise RuntimeError(err)

    async def authenticate(
        self, method: str, path: str, query: str | None, headers: Iterable[tuple[str, str]]
    ) -> VerifiedAgent:
        return await run_async(self._core.authenticate(Request(method, path, query, list(headers))), self._client)

    async def aclose(self) -> None:
        await self._client.aclose()


__all__ = [
    "AsyncReceiver",
    "Receiver",
    "ReceiverConfig",
    "Rejection",
    "ReplayCache",
    "Request",
    "VerifiedAgent",
]
