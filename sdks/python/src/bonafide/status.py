"""Token Status Lists (draft-ietf-oauth-status-list) for receivers that verify offline:
decode and verify a Status List Token, and a cache that answers, for a verified token,
whether its entry still says valid. The Rust receiver layer's rules
(`crates/client/src/status.rs`): only URIs under a trusted registry's
`/v1/status-lists/` are ever fetched (else `STATUS_LIST_UNTRUSTED`); a list is verified
with the registry's status-list keys (never the token keys); used for its `ttl`, then
refetched with `If-None-Match`, at most once per `min_refetch`; its age counts from its
`iat`; past `max_staleness` a valid entry no longer counts (503 `STATUS_LIST_STALE`, or
`STATUS_LIST_UNAVAILABLE` when none was ever fetched), unless failing open; a revoked
or suspended entry refuses the token whatever the list's age."""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import jws
from ._b64 import Base64Error, b64url_decode
from ._io import Fetch, Gen, Response, Sleep, check_fetch_url, is_loopback_http
from .errors import (
    AGENT_SUSPENDED,
    STATUS_LIST_STALE,
    STATUS_LIST_UNAVAILABLE,
    STATUS_LIST_UNTRUSTED,
    TOKEN_INVALID,
    TOKEN_REVOKED,
    BonafideError,
    KeyError_,
    TokenError,
)
from .keys import PublicKey, jwks_keys

STATUS_LIST_TYP = "statuslist+jwt"
STATUS_LIST_MEDIA_TYPE = "application/statuslist+jwt"
STATUS_LISTS_PATH = "/v1/status-lists/"
STATUS_LIST_JWKS_PATH = "/.well-known/status-list-jwks.json"
MAX_LIST_BYTES = 16 * 1024 * 1024
MAX_TOKEN_BYTES = 4 * 1024 * 1024
MAX_URI_BYTES = 2048
MAX_LISTS = 1024
DEFAULT_TTL_S = 60
UNPUBLISHED_TRIES = 3
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class StatusListError(BonafideError):
    """A Status List Token that does not verify or decode."""


@dataclass(frozen=True, slots=True)
class StatusList:
    bits: int
    data: bytes

    def __len__(self) -> int:
        return len(self.data) * (8 // self.bits)

    def get(self, idx: int) -> int:
        """Entry `idx`: bits `(idx * bits) % 8` upwards of byte `(idx * bits) // 8`."""
        per_byte = 8 // self.bits
        byte = idx // per_byte
        if idx < 0 or byte >= len(self.data):
            raise IndexError(idx)
        shift = (idx % per_byte) * self.bits
        return (self.data[byte] >> shift) & ((1 << self.bits) - 1)


def decode_list(encoded: Any) -> StatusList:
    """`{"bits", "lst"}`: base64url of a zlib (DEFLATE) stream, inflated at most 16 MiB."""
    if not isinstance(encoded, dict) or set(encoded) - {"bits", "lst", "aggregation_uri"}:
        raise StatusListError("`status_list` is not `{bits, lst}`")
    bits, lst = encoded.get("bits"), encoded.get("lst")
    if type(bits) is not int or bits not in (1, 2, 4, 8):
        raise StatusListError(f"`bits` must be 1, 2, 4 or 8, not {bits!r}")
    if not isinstance(lst, str):
        raise StatusListError("`lst` is not a string")
    try:
        compressed = b64url_decode(lst)
    except Base64Error as e:
        raise StatusListError(f"`lst` is not a compressed status list: base64url: {e}") from None
    d = zlib.decompressobj()
    try:
        data = d.decompress(compressed, MAX_LIST_BYTES)
        if d.unconsumed_tail:
            raise StatusListError(f"a status list holds at most {MAX_LIST_BYTES} bytes")
        data += d.flush()
        if not d.eof:
            raise StatusListError("`lst` is not a compressed status list: truncated")
    except zlib.error as e:
        raise StatusListError(f"`lst` is not a compressed status list: zlib: {e}") from None
    return StatusList(bits, data)


def verify_list_token(
    token: str, keys: Mapping[str, PublicKey], uri: str, now_s: int, leeway_s: int
) -> tuple[dict[str, Any], StatusList]:
    """Opens a Status List Token: `typ statuslist+jwt`, a `kid` of `keys`, signature,
    `sub` = the URI asked for, a positive `ttl`, `exp` not passed."""

    def key_for(h: jws.Protected) -> PublicKey:
        k = keys.get(h.kid)
        if k is None:
            raise _UnknownListKey()
        return k

    try:
        _, _, claims = jws.open_jws(token, typ=STATUS_LIST_TYP, key_for=key_for, max_bytes=MAX_TOKEN_BYTES)
    except jws.JwsError as e:
        raise StatusListError(e.message) from None
    sub, iat, exp, ttl = claims.get("sub"), claims.get("iat"), claims.get("exp"), claims.get("ttl")
    if not isinstance(sub, str) or type(iat) is not int:
        raise StatusListError("status list token claims: `sub` and `iat` are required")
    if exp is not None and type(exp) is not int:
        raise StatusListError("status list token claims: `exp` is not an integer")
    if ttl is not None and (type(ttl) is not int or ttl < 0):
        raise StatusListError("status list token claims: `ttl` is not an unsigned integer")
    if sub != uri:
        raise StatusListError(f"status list token claims: `sub` is not the list asked for ({uri})")
    if ttl == 0:
        raise StatusListError("status list token claims: `ttl` must be positive")
    if exp is not None and exp <= now_s - leeway_s:
        raise StatusListError(f"the status list token expired at {exp}")
    return claims, decode_list(claims.get("status_list"))


class _UnknownListKey(StatusListError):
    def __init__(self) -> None:
        super().__init__("no status list key with this `kid`")


@dataclass(frozen=True, slots=True)
class StatusCheck:
    """What the token's status list said. `state`: `"valid"` (revocation checked, the
    list `age_s` old), `"unchecked"` (failing open: `reason` says why) or `"none"` (the
    token names no list)."""

    state: str
    age_s: float | None = None
    version: int | None = None
    reason: str | None = None
    uri: str | None = None
    idx: int | None = None

    @property
    def revocation_checked(self) -> bool:
        return self.state == "valid"


class StatusError(BonafideError):
    """The token's status refuses it (`refusal`: 401 with `code`), or cannot be known
    (503 `STATUS_LIST_STALE` / `STATUS_LIST_UNAVAILABLE`)."""

    def __init__(self, code: str, message: str, refusal: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class TrustedLists:
    prefix: str  # `https://registry/v1/status-lists/`
    keys_url: str | None  # its status-list JWKS
    keys: Mapping[str, PublicKey] | None = None  # or static keys

    @classmethod
    def registry(cls, registry_url: str) -> TrustedLists:
        base = registry_url.rstrip("/")
        return cls(base + STATUS_LISTS_PATH, base + STATUS_LIST_JWKS_PATH)


@dataclass(frozen=True, slots=True)
class StatusListConfig:
    trusted: tuple[TrustedLists, ...]
    max_staleness_s: float = 600.0
    fail_open: bool = False
    min_refetch_s: float = 5.0
    leeway_s: int = 60

    @classmethod
    def for_registry(cls, registry_url: str, **kw: Any) -> StatusListConfig:
        return cls((TrustedLists.registry(registry_url),), **kw)


@dataclass(slots=True)
class _Cached:
    lst: StatusList
    etag: str | None
    confirmed_ms: int
    issued_ms: int
    ttl_ms: int
    exp_s: int | None
    version: int | None

    def age_ms(self, now_ms: int) -> int:
        return now_ms - min(self.confirmed_ms, self.issued_ms)


@dataclass(slots=True)
class _Slot:
    trusted: int
    cached: _Cached | None = None
    next_ms: int | None = None
    error: str | None = None


class StatusLists:
    """The cache of a receiver's status lists (offline mode)."""

    def __init__(self, config: StatusListConfig) -> None:
        if not config.trusted:
            raise ValueError("no trusted status list prefix")
        if config.max_staleness_s <= 0 or config.leeway_s < 0:
            raise ValueError("max_staleness must be positive and leeway ≥ 0")
        for t in config.trusted:
            p = t.prefix
            if not (p.startswith("https://") or is_loopback_http(p)):
                raise ValueError(f"trusted prefix `{p}` must be https (plain http only on loopback)")
            if not p.endswith("/") or any(c in p for c in "?#@") or p != p.strip():
                raise ValueError(f"trusted prefix `{p}` must be a URL ending in `/`, without user, query or fragment")
            if t.keys_url is not None:
                check_fetch_url(t.keys_url)
        self.config = config
        self._keys: list[dict[str, PublicKey] | None] = [
            dict(t.keys) if t.keys is not None else None for t in config.trusted
        ]
        self._keys_next_ms: list[int] = [-(2**62)] * len(config.trusted)
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()

    def _trusted(self, uri: str) -> int:
        def untrusted(reason: str) -> StatusError:
            return StatusError(
                STATUS_LIST_UNTRUSTED,
                f"the token's status list `{uri[:200]}` is not one this receiver trusts: {reason}",
                True,
            )

        if len(uri) > MAX_URI_BYTES:
            raise untrusted("it is too long")
        for i, t in enumerate(self.config.trusted):
            if uri.startswith(t.prefix):
                rest = uri[len(t.prefix) :]
                if rest and rest not in (".", "..") and all(c in _ID_CHARS for c in rest):
                    return i
        raise untrusted(
            "it is not a list of the registry whose keys verify the token (see the trusted status list prefixes)"
        )

    def _fresh(self, c: _Cached, now_ms: int) -> bool:
        bound = min(c.ttl_ms, int(self.config.max_staleness_s * 1000))
        return now_ms - c.confirmed_ms < bound and self._usable(c, now_ms)

    def _usable(self, c: _Cached, now_ms: int) -> bool:
        within = c.age_ms(now_ms) <= int(self.config.max_staleness_s * 1000)
        expired = c.exp_s is not None and (c.exp_s + self.config.leeway_s) * 1000 <= now_ms
        return within and not expired

    def _stale(self, age_ms: int | None, reason: str, ref: tuple[str, int]) -> StatusCheck:
        if self.config.fail_open:
            return StatusCheck(
                "unchecked", None if age_ms is None else age_ms / 1000, reason=reason, uri=ref[0], idx=ref[1]
            )
        if age_ms is None:
            raise StatusError(
                STATUS_LIST_UNAVAILABLE, f"the token's status list cannot be fetched (failing closed): {reason}", False
            )
        raise StatusError(
            STATUS_LIST_STALE,
            f"the token's status list is {age_ms // 1000}s old, beyond this receiver's bound (failing closed): {reason}",
            False,
        )

    def check(self, claims: Mapping[str, Any], now_ms: int) -> Gen[StatusCheck]:
        """The token's entry (claims already verified). Raises TokenError for a revoked
        (`TOKEN_REVOKED`) or suspended (`AGENT_SUSPENDED`) token or a bad index,
        StatusError for an untrusted or unknown status."""
        status = claims.get("status")
        ref = status.get("status_list") if isinstance(status, dict) else None
        if ref is None:
            return StatusCheck("none")
        uri, idx = ref["uri"], ref["idx"]
        slot = self._slots.get(uri)
        if slot is None:
            trusted = self._trusted(uri)
            with self._lock:
                if len(self._slots) >= MAX_LISTS:
                    self._slots = {u: s for u, s in self._slots.items() if s.cached is not None}
                    if len(self._slots) >= MAX_LISTS:
                        self._slots.clear()
                slot = self._slots.setdefault(uri, _Slot(trusted))
        cached = slot.cached
        if cached is None or not self._fresh(cached, now_ms):
            cached = yield from self._refresh(slot, uri, now_ms)
        if cached is None:
            return self._stale(None, slot.error or "the list is older than its bound", (uri, idx))
        try:
            value = cached.lst.get(idx)
        except IndexError:
            raise TokenError(
                TOKEN_INVALID,
                f"token claims are invalid: the token's status index {idx} is beyond its list ({len(cached.lst)} entries)",
            ) from None
        if value == 1:
            raise TokenError(TOKEN_REVOKED, "token has been revoked")
        if value == 2:
            raise TokenError(AGENT_SUSPENDED, "agent is suspended by its issuer")
        if value != 0:
            raise TokenError(
                TOKEN_INVALID,
                f"token claims are invalid: the token's status list entry is {value:#04x}, a status this verifier does not know",
            )
        age = cached.age_ms(now_ms)
        if self._usable(cached, now_ms):
            return StatusCheck("valid", max(age, 0) / 1000, cached.version, uri=uri, idx=idx)
        return self._stale(age, slot.error or "the list is older than its bound", (uri, idx))

    def _refresh(self, slot: _Slot, uri: str, now_ms: int) -> Gen[_Cached | None]:
        if slot.next_ms is not None and now_ms < slot.next_ms:
            return slot.cached
        slot.next_ms = now_ms + int(self.config.min_refetch_s * 1000)
        etag = slot.cached.etag if slot.cached is not None else None
        cached_version = slot.cached.version if slot.cached is not None else None
        fetched, unpublished = yield from self._fetch(uri, etag, slot.trusted, now_ms)
        tries = 1
        while tries < UNPUBLISHED_TRIES and etag is None and unpublished:
            # A list the registry has not published yet (503 for a second after its
            # first slot): wait for it rather than fail a token issued a moment ago.
            yield Sleep(1.0)
            fetched, unpublished = yield from self._fetch(uri, None, slot.trusted, now_ms)
            tries += 1
        if isinstance(fetched, _Cached):
            if cached_version is not None and (fetched.version is None or fetched.version < cached_version):
                slot.error = (
                    f"the registry served an older version of the list ({fetched.version} after {cached_version})"
                )
            else:
                slot.cached, slot.error = fetched, None
        elif fetched == "not-modified":
            if slot.cached is not None:
                c = slot.cached
                slot.cached = _Cached(c.lst, c.etag, now_ms, c.issued_ms, c.ttl_ms, c.exp_s, c.version)
                slot.error = None
            else:
                slot.error = "304 Not Modified for a list not cached"
        else:
            if unpublished:
                slot.next_ms = min(slot.next_ms, now_ms + 1000)
            slot.error = fetched
        return slot.cached

    def _list_keys(self, i: int, refetch: bool, now_ms: int) -> Gen[dict[str, PublicKey]]:
        current = self._keys[i]
        due = now_ms >= self._keys_next_ms[i]
        url = self.config.trusted[i].keys_url
        if current is not None and (not refetch or not due):
            return current
        if url is None:
            if current is None:
                raise StatusListError("no status list keys")
            return current
        if current is None and not due:
            raise StatusListError(f"the status list keys at {url} could not be fetched; retrying shortly")
        self._keys_next_ms[i] = now_ms + int(self.config.min_refetch_s * 1000)
        resp = yield Fetch("GET", url, {"accept": "application/json"})
        assert isinstance(resp, Response)
        if resp.status != 200:
            raise StatusListError(f"cannot fetch the status list keys: {resp.error or f'HTTP {resp.status}'}")
        try:
            keys = jwks_keys(json.loads(resp.body))
        except (ValueError, KeyError_) as e:
            raise StatusListError(f"the status list keys: {e}") from None
        self._keys[i] = keys
        return keys

    def _fetch(self, uri: str, etag: str | None, trusted: int, now_ms: int) -> Gen[tuple[_Cached | str, bool]]:
        headers = {"accept": STATUS_LIST_MEDIA_TYPE}
        if etag is not None:
            headers["if-none-match"] = etag
        resp = yield Fetch("GET", uri, headers, max_bytes=MAX_TOKEN_BYTES)
        assert isinstance(resp, Response)
        if resp.status == 0:
            return (f"GET failed: {resp.error}", False)
        if resp.status == 304 and etag is not None:
            return ("not-modified", False)
        if not 200 <= resp.status < 300:
            return (f"the registry answered HTTP {resp.status}", resp.status == 503)
        if resp.media_type() != STATUS_LIST_MEDIA_TYPE:
            return (f"the answer is {resp.media_type()}, not {STATUS_LIST_MEDIA_TYPE}", False)
        try:
            text = resp.body.decode("utf-8").strip()
        except UnicodeDecodeError:
            return ("the list is not text", False)
        now_s = now_ms // 1000
        try:
            keys = yield from self._list_keys(trusted, False, now_ms)
            try:
                claims, lst = verify_list_token(text, keys, uri, now_s, self.config.leeway_s)
            except _UnknownListKey:
                # A key the set lacks: the registry may have rotated it; ask once.
                keys = yield from self._list_keys(trusted, True, now_ms)
                claims, lst = verify_list_token(text, keys, uri, now_s, self.config.leeway_s)
        except StatusListError as e:
            return (f"the list does not verify: {e}", False)
        ttl = claims.get("ttl") or DEFAULT_TTL_S
        version = claims.get("version")
        return (
            _Cached(
                lst,
                resp.headers.get("etag"),
                now_ms,
                claims["iat"] * 1000,
                ttl * 1000,
                claims.get("exp"),
                version if type(version) is int and version >= 0 else None,
            ),
            False,
        )
