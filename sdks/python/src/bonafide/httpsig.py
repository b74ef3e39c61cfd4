"""HTTP Message Signatures (RFC 9421) in the Web Bot Auth profile: verify a request's
signature, or sign one. The Rust core's `httpsig` module, same checks and order:
size, parse, choose the label (by tag), canonical form of the `Signature-Input` member,
parameters and times, coverage (`@authority`, and a present `Signature-Agent` whole or
member by member), key and `alg`, signature. Every refusal is `PROOF_INVALID`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import PROOF_INVALID, TokenError
from .keys import PrivateKey, PublicKey

WEB_BOT_AUTH_TAG = "web-bot-auth"
SIGNATURE_AGENT = "signature-agent"
DIRECTORY_MEDIA_TYPE = "application/http-message-signatures-directory+json"
DIRECTORY_PATH = "/.well-known/http-message-signatures-directory"
MAX_MEMBERS = 16
MAX_COMPONENTS = 32
MAX_PARAMS = 16
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_LEEWAY = 60
DEFAULT_MAX_AGE = 300
MAX_INT = 999_999_999_999_999
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*\Z")
_B64 = re.compile(r"[A-Za-z0-9+/=]*")


def _shown(s: str) -> str:
    return s[:64]


class HttpSigError(TokenError):
    """A message signature that does not hold, or cannot be made: `PROOF_INVALID`."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(PROOF_INVALID, message)
        self.kind = kind


# ---- RFC 8941 structured fields (the subset RFC 9421 uses) --------------------------


@dataclass(frozen=True, slots=True)
class Token:
    value: str


@dataclass(frozen=True, slots=True)
class Dec:
    thousandths: int


Bare = Any  # int | Dec | str | Token | bytes | bool


@dataclass(slots=True)
class Item:
    bare: Bare
    params: list[tuple[str, Bare]] = field(default_factory=list)


@dataclass(slots=True)
class Entry:
    key: str
    inner: list[Item] | None  # an inner list, or None for an item member
    item: Item | None
    params: list[tuple[str, Bare]]
    text: tuple[int, int]


class _Parser:
    def __init__(self, s: str, field_name: str) -> None:
        self.s = s
        self.pos = 0
        self.field = field_name

    def err(self, reason: str) -> HttpSigError:
        return HttpSigError(f"malformed `{self.field}` header at byte {self.pos}: {reason}", "malformed")

    def peek(self) -> str | None:
        return self.s[self.pos] if self.pos < len(self.s) else None

    def eat(self, c: str) -> bool:
        if self.peek() == c:
            self.pos += 1
            return True
        return False

    def skip_sp(self) -> None:
        while self.eat(" "):
            pass

    def skip_ows(self) -> None:
        while self.eat(" ") or self.eat("\t"):
            pass

    def key(self) -> str:
        c = self.peek()
        if c is None or not ("a" <= c <= "z" or c == "*"):
            raise self.err("expected a key")
        start = self.pos
        while (c := self.peek()) is not None and ("a" <= c <= "z" or "0" <= c <= "9" or c in "_-.*"):
            self.pos += 1
        return self.s[start : self.pos]

    def params(self) -> list[tuple[str, Bare]]:
        params: list[tuple[str, Bare]] = []
        while self.eat(";"):
            self.skip_sp()
            key = self.key()
            value: Bare = self.bare() if self.eat("=") else True
            if any(k == key for k, _ in params):
                raise self.err("duplicate parameter")
            params.append((key, value))
            if len(params) > MAX_PARAMS:
                raise HttpSigError(f"more than {MAX_PARAMS} parameters", "too_many")
        return params

    def item(self) -> Item:
        bare = self.bare()
        return Item(bare, self.params())

    def inner_list(self) -> tuple[list[Item], list[tuple[str, Bare]]]:
        if not self.eat("("):
            raise self.err("expected `(`")
        items: list[Item] = []
        while True:
            self.skip_sp()
            if self.eat(")"):
                return items, self.params()
            items.append(self.item())
            if len(items) > MAX_COMPONENTS:
                raise HttpSigError(f"more than {MAX_COMPONENTS} inner list items", "too_many")
            if self.peek() not in (" ", ")"):
                raise self.err("expected a space or `)` in inner list")

    def bare(self) -> Bare:
        c = self.peek()
        if c is not None and (c == "-" or "0" <= c <= "9"):
            return self.number()
        if c == '"':
            return self.string()
        if c == ":":
            return self.bytes_()
        if c == "?":
            return self.boolean()
        if c is not None and ((c.isascii() and c.isalpha()) or c == "*"):
            return self.token()
        raise self.err("expected an item")

    def number(self) -> Bare:
        negative = self.eat("-")
        start = self.pos
        while (c := self.peek()) is not None and "0" <= c <= "9":
            self.pos += 1
            if self.pos - start > 15:
                raise self.err("integer longer than 15 digits")
        int_digits = self.pos - start
        if int_digits == 0:
            raise self.err("expected a digit")
        value = int(self.s[start : self.pos])
        sign = -1 if negative else 1
        if not self.eat("."):
            return sign * value
        if int_digits > 12:
            raise self.err("decimal with more than 12 integer digits")
        fstart = self.pos
        while (c := self.peek()) is not None and "0" <= c <= "9":
            self.pos += 1
            if self.pos - fstart > 3:
                raise self.err("decimal with more than 3 fractional digits")
        frac = self.s[fstart : self.pos]
        if not frac:
            raise self.err("decimal ends with `.`")
        return Dec(sign * (value * 1000 + int(frac.ljust(3, "0"))))

    def string(self) -> Bare:
        self.eat('"')
        out: list[str] = []
        while True:
            c = self.peek()
            if c is None:
                raise self.err("unterminated string")
            self.pos += 1
            if c == '"':
                return "".join(out)
            if c == "\\":
                n = self.peek()
                if n not in ('"', "\\"):
                    raise self.err("invalid escape in string")
                self.pos += 1
                out.append(n)
            elif 0x20 <= ord(c) <= 0x7E:
                out.append(c)
            else:
                raise self.err("non-printable character in string")

    def token(self) -> Bare:
        start = self.pos
        while (c := self.peek()) is not None and (c in _TCHAR or c in ":/"):
            self.pos += 1
        return Token(self.s[start : self.pos])

    def bytes_(self) -> Bare:
        self.eat(":")
        m = _B64.match(self.s, self.pos)
        assert m is not None
        encoded = m.group(0)
        self.pos = m.end()
        if not self.eat(":"):
            raise self.err("unterminated byte sequence")
        try:
            stripped = encoded.rstrip("=")
            if "=" in stripped or len(stripped) % 4 == 1:
                raise ValueError
            raw = base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
            if base64.b64encode(raw).decode().rstrip("=") != stripped:
                raise ValueError  # non-zero trailing bits
        except (binascii.Error, ValueError):
            raise self.err("invalid base64 in byte sequence") from None
        return raw

    def boolean(self) -> Bare:
        self.eat("?")
        c = self.peek()
        self.pos += 1
        if c == "1":
            return True
        if c == "0":
            return False
        raise self.err("invalid boolean")


def parse_dictionary(value: str, field_name: str) -> list[Entry]:
    """An RFC 8941 Dictionary (§4.2.2), refusing duplicate keys."""
    p = _Parser(value, field_name)
    p.skip_sp()
    entries: list[Entry] = []
    while p.peek() is not None:
        key = p.key()
        if any(e.key == key for e in entries):
            raise p.err("duplicate dictionary key")
        if p.eat("="):
            start = p.pos
            if p.peek() == "(":
                items, params = p.inner_list()
                entries.append(Entry(key, items, None, params, (start, p.pos)))
            else:
                item = p.item()
                entries.append(Entry(key, None, item, [], (start, p.pos)))
        else:
            params = p.params()
            entries.append(Entry(key, None, Item(True, params), [], (p.pos, p.pos)))
        if len(entries) > MAX_MEMBERS:
            raise HttpSigError(f"more than {MAX_MEMBERS} dictionary members", "too_many")
        p.skip_ows()
        if p.peek() is None:
            break
        if not p.eat(","):
            raise p.err("expected `,` between members")
        p.skip_ows()
        if p.peek() is None:
            raise p.err("trailing comma")
    return entries


def ser_bare(b: Bare) -> str:
    if b is True:
        return "?1"
    if b is False:
        return "?0"
    if isinstance(b, int):
        return str(b)
    if isinstance(b, Dec):
        sign = "-" if b.thousandths < 0 else ""
        a = abs(b.thousandths)
        frac = f"{a % 1000:03d}".rstrip("0") or "0"
        return f"{sign}{a // 1000}.{frac}"
    if isinstance(b, str):
        return '"' + b.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(b, Token):
        return b.value
    if isinstance(b, bytes):
        return ":" + base64.b64encode(b).decode() + ":"
    raise TypeError(type(b))


def ser_params(params: Iterable[tuple[str, Bare]]) -> str:
    return "".join(f";{k}" if v is True else f";{k}={ser_bare(v)}" for k, v in params)


def ser_item(item: Item) -> str:
    return ser_bare(item.bare) + ser_params(item.params)


def ser_inner(items: Sequence[Item], params: Iterable[tuple[str, Bare]]) -> str:
    return "(" + " ".join(ser_item(i) for i in items) + ")" + ser_params(params)


# ---- the message ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    uri: str
    scheme: str
    authority: str
    path: str
    query: str | None


def _parse_target(url: str) -> _Target:
    def bad(why: str) -> HttpSigError:
        return HttpSigError(f"target URI {why}", "bad_url")

    if not url.isascii() or not all(0x21 <= ord(c) <= 0x7E for c in url):
        raise bad("holds spaces, control or non-ASCII characters")
    if "#" in url:
        raise bad("holds a fragment")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise bad("is not an absolute http or https URI")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise bad("is not an absolute http or https URI")
    default_port = "80" if scheme == "http" else "443"
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path_query = rest[:end], rest[end:]
    if "@" in authority:
        raise bad("holds userinfo")
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise bad("has an unclosed IPv6 literal")
        host, after = authority[: close + 1], authority[close + 1 :]
        if after.startswith(":"):
            port: str | None = after[1:]
        elif not after:
            port = None
        else:
            raise bad("has junk after the IPv6 literal")
    else:
        host, sep2, p = authority.partition(":")
        port = p if sep2 else None
    if not host:
        raise bad("has no host")
    auth = host.lower()
    if port:
        if len(port) > 5 or not port.isdigit() or int(port) > 65535:
            raise bad("has an invalid port")
        if str(int(port)) != default_port:
            auth += f":{int(port)}"
    path, qsep, query = path_query.partition("?")
    return _Target(url, scheme, auth, path or "/", query if qsep else None)


def check_url(url: str) -> None:
    """Raises HttpSigError if `url` is not a target URI components can be derived from."""
    _parse_target(url)


class _Resolved:
    def __init__(self, method: str, url: str, headers: Sequence[tuple[str, str]], limit: int) -> None:
        if not method or not all(c in _TCHAR for c in method):
            raise HttpSigError(f"method `{_shown(method)}` is not an HTTP token", "bad_method")
        self.method = method
        self.target = _parse_target(url)
        self.headers = headers
        size = len(method) + len(url) + sum(len(k) + len(v) + 4 for k, v in headers)
        if size > limit:
            raise HttpSigError(f"message headers exceed {limit} bytes", "too_large")
        self.signature_input = self.header("signature-input") or ""

    def header(self, name: str) -> str | None:
        out: str | None = None
        for k, v in self.headers:
            if k.lower() != name:
                continue
            if any(c in v for c in "\r\n\0"):
                raise HttpSigError(f"header `{_shown(name)}` holds a CR, LF or NUL", "bad_header")
            v = v.strip(" \t")
            out = v if out is None else f"{out}, {v}"
        return out

    def component(self, name: str) -> str:
        if not name.startswith("@"):
            v = self.header(name)
            if v is None:
                raise HttpSigError(f"covered header `{_shown(name)}` is missing from the message", "missing_component")
            return v
        t = self.target
        if name == "@method":
            return self.method
        if name == "@target-uri":
            return t.uri
        if name == "@authority":
            return t.authority
        if name == "@scheme":
            return t.scheme
        if name == "@path":
            return t.path
        if name == "@query":
            return "?" + (t.query or "")
        if name == "@request-target":
            return t.path if t.query is None else f"{t.path}?{t.query}"
        raise HttpSigError(
            f"component `{_shown(name)}` is unknown, unsupported or not defined for this message", "unknown_component"
        )

    def dictionary_member(self, name: str, key: str) -> str:
        missing = HttpSigError(
            f"covered header `{_shown(name)};key={key}` is missing from the message", "missing_component"
        )
        value = self.header(name)
        if value is None:
            raise missing
        for e in parse_dictionary(value, "covered dictionary field"):
            if e.key == key:
                return ser_inner(e.inner, e.params) if e.inner is not None else ser_item(e.item)  # type: ignore[arg-type]
        raise missing


def _component_key(name: str, params: list[tuple[str, Bare]]) -> str | None:
    if not params:
        return None
    if len(params) == 1 and params[0][0] == "key" and isinstance(params[0][1], str) and not name.startswith("@"):
        member = params[0][1]
        if not _KEY.match(member):
            raise HttpSigError(f"invalid component identifier `{_shown(name)}`", "bad_component")
        return member
    other = next((k for k, _ in params if k != "key"), params[0][0])
    raise HttpSigError(
        f"component `{_shown(name)}` has unsupported parameter `{_shown(other)}`", "unsupported_component_parameter"
    )


def _covered(items: Sequence[Item]) -> list[tuple[str, str | None]]:
    if len(items) > MAX_COMPONENTS:
        raise HttpSigError(f"more than {MAX_COMPONENTS} covered components", "too_many")
    out: list[tuple[str, str | None]] = []
    for item in items:
        name = item.bare
        if not isinstance(name, str) or isinstance(name, bool):
            raise HttpSigError(f"invalid component identifier `{_shown(ser_bare(name))}`", "bad_component")
        key = _component_key(name, item.params)
        body = name[1:] if name.startswith("@") else name
        if not body or not all(c in _LOWER_TCHAR for c in body) or name == "@signature-params":
            raise HttpSigError(f"invalid component identifier `{_shown(name)}`", "bad_component")
        if (name, key) in out:
            raise HttpSigError(f"component `{_shown(name)}` is covered twice", "duplicate_component")
        out.append((name, key))
    return out


def _base(r: _Resolved, items: Sequence[Item], params_text: str) -> str:
    lines = []
    for item in items:
        name = item.bare
        key = _component_key(name, item.params)
        value = r.component(name) if key is None else r.dictionary_member(name, key)
        lines.append(f"{ser_item(item)}: {value}\n")
    return "".join(lines) + '"@signature-params": ' + params_text


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    label: str
    keyid: str
    alg: str
    created: int
    expires: int | None
    nonce: str | None
    tag: str | None
    covered: tuple[str, ...]
    signature_agent: str | None
    replay_until: int  # the last second at which it would be accepted again


def verify(
    *,
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    key_for: Callable[[str], PublicKey | None],
    now: int,
    leeway: int = DEFAULT_LEEWAY,
    max_age: int = DEFAULT_MAX_AGE,
    required_tag: str | None = WEB_BOT_AUTH_TAG,
    required_components: Sequence[str] = ("@authority",),
    require_expires: bool = True,
    require_nonce: bool = False,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> VerifiedSignature:
    """Verifies one signature of a request (the first `Signature-Input` member with
    `required_tag`). `url` is the absolute URI the receiver is reached at; `key_for`
    maps a `keyid` to its key (the Web Bot Auth keyid is the RFC 7638 thumbprint)."""
    r = _Resolved(method, url, headers, max_header_bytes)
    if not r.signature_input:
        raise HttpSigError("missing `Signature-Input` header", "missing_header")
    entries = parse_dictionary(r.signature_input, "Signature-Input")
    if required_tag is None:
        entry = entries[0] if entries else None
    else:
        entry = next(
            (e for e in entries if e.inner is not None and any(k == "tag" and v == required_tag for k, v in e.params)),
            None,
        )
    if entry is None:
        if required_tag is not None:
            raise HttpSigError(f"no signature with tag `{_shown(required_tag)}`", "no_tag")
        raise HttpSigError("missing `Signature-Input` header", "missing_header")
    if entry.inner is None:
        raise HttpSigError(f"`Signature-Input` member `{entry.key}` is not an inner list", "bad_member")
    canonical = ser_inner(entry.inner, entry.params)
    if canonical != r.signature_input[entry.text[0] : entry.text[1]]:
        raise HttpSigError(
            f"`Signature-Input` member `{entry.key}` is not canonically serialized (RFC 8941 §4.1)", "non_canonical"
        )
    params = dict(entry.params)

    def int_param(name: str) -> int | None:
        v = params.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise HttpSigError(f"signature parameter `{name}` must be an integer", "bad_parameter")
        return v

    def str_param(name: str) -> str | None:
        v = params.get(name)
        if v is None:
            return None
        if not isinstance(v, str):
            raise HttpSigError(f"signature parameter `{name}` must be a string", "bad_parameter")
        return v

    created, expires = int_param("created"), int_param("expires")
    keyid, alg, nonce, tag = str_param("keyid"), str_param("alg"), str_param("nonce"), str_param("tag")
    if created is None:
        raise HttpSigError("signature parameter `created` is missing", "missing_parameter")
    if expires is not None:
        if expires < created:
            raise HttpSigError(f"`expires` ({expires}) is before `created` ({created})", "expires_before_created")
    elif require_expires:
        raise HttpSigError("signature parameter `expires` is missing", "missing_parameter")
    if created > now + leeway:
        raise HttpSigError(f"`created` ({created}) is in the future (now {now})", "created_in_future")
    if expires is not None and now > expires + leeway:
        raise HttpSigError(f"signature expired at {expires} (now {now})", "expired")
    if now > created + max_age + leeway:
        raise HttpSigError(f"signature created at {created} is older than {max_age} s (now {now})", "too_old")
    if require_nonce and nonce is None:
        raise HttpSigError("signature parameter `nonce` is missing", "missing_parameter")
    covered = _covered(entry.inner)
    names = [n for n, _ in covered]
    for required in required_components:
        if not any(n == required or (required == "@authority" and n == "@target-uri") for n in names):
            raise HttpSigError(f"signature does not cover required component `{_shown(required)}`", "not_covered")
    agent = r.header(SIGNATURE_AGENT)
    if agent is not None:
        _signature_agent_covered(agent, covered)
    sig_field = r.header("signature")
    if sig_field is None:
        raise HttpSigError("missing `Signature` header", "missing_header")
    sig_entry = next((e for e in parse_dictionary(sig_field, "Signature") if e.key == entry.key), None)
    if sig_entry is None:
        raise HttpSigError(f"no `{entry.key}` member in `Signature`", "missing_label")
    if sig_entry.item is None or not isinstance(sig_entry.item.bare, bytes):
        raise HttpSigError(f"`Signature` member `{entry.key}` is not a byte sequence", "bad_member")
    if keyid is None:
        raise HttpSigError("signature parameter `keyid` is missing", "missing_parameter")
    key = key_for(keyid)
    if key is None:
        raise HttpSigError(f"unknown keyid `{_shown(keyid)}`", "unknown_key")
    if key.alg not in ("EdDSA", "ES256"):
        raise HttpSigError(f"key algorithm {key.alg} is not usable for HTTP message signatures", "unsupported_key")
    if alg is not None:
        named = {"ed25519": "EdDSA", "ecdsa-p256-sha256": "ES256"}.get(alg)
        if named is None:
            raise HttpSigError(
                f"unsupported signature algorithm `{_shown(alg)}` (use ed25519 or ecdsa-p256-sha256)", "unsupported_alg"
            )
        if named != key.alg:
            raise HttpSigError(f"`alg` `{alg}` does not fit the {key.alg} key", "alg_mismatch")
    base = _base(r, entry.inner, canonical)
    if not key.verify(base.encode(), sig_entry.item.bare):
        raise HttpSigError("signature does not verify", "bad_signature")
    last = created + max_age
    replay_until = (last if expires is None else min(expires, last)) + leeway
    return VerifiedSignature(
        label=entry.key,
        keyid=keyid,
        alg=key.alg,
        created=created,
        expires=expires,
        nonce=nonce,
        tag=tag,
        covered=tuple(names),
        signature_agent=agent,
        replay_until=replay_until,
    )


def _signature_agent_covered(value: str, covered: list[tuple[str, str | None]]) -> None:
    if any(n == SIGNATURE_AGENT and k is None for n, k in covered):
        return
    keys = [k for n, k in covered if n == SIGNATURE_AGENT and k is not None]
    not_covered = HttpSigError(f"signature does not cover required component `{SIGNATURE_AGENT}`", "not_covered")
    if not keys:
        raise not_covered
    members = parse_dictionary(value, "Signature-Agent")
    if not all(m.key in keys for m in members):
        raise not_covered


@dataclass(frozen=True, slots=True)
class Signed:
    signature_input: str
    signature: str


def _component_item(spec: str) -> Item:
    name, sep, member = spec.partition(";key=")
    if sep:
        return Item(name, [("key", member.strip('"'))])
    return Item(spec)


def sign(
    key: PrivateKey,
    *,
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    components: Sequence[str],
    created: int,
    expires: int | None,
    keyid: str | None = None,
    nonce: str | None = None,
    tag: str | None = WEB_BOT_AUTH_TAG,
    label: str = "sig1",
    include_alg: bool = False,
) -> Signed:
    """Signs a request over `components` (`@authority`, `signature-agent`, or one
    Dictionary member as `signature-agent;key=sig1`) with an Ed25519 or P-256 key;
    returns the `Signature-Input` and `Signature` values to add. `keyid` defaults to
    the key's RFC 7638 thumbprint (the Web Bot Auth keyid)."""
    alg_name = {"EdDSA": "ed25519", "ES256": "ecdsa-p256-sha256"}.get(key.alg)
    if alg_name is None:
        raise HttpSigError(f"key algorithm {key.alg} is not usable for HTTP message signatures", "unsupported_key")
    if not _KEY.match(label):
        raise HttpSigError(
            "cannot sign: label must be an RFC 8941 key (lowercase letters, digits, `_-.*`)", "bad_input"
        )
    if len(components) > MAX_COMPONENTS:
        raise HttpSigError(f"more than {MAX_COMPONENTS} covered components", "too_many")
    r = _Resolved(method, url, headers, 1 << 62)
    items = [_component_item(c) for c in components]
    _covered(items)

    def text(v: str, what: str) -> str:
        if not all(0x20 <= ord(c) <= 0x7E for c in v):
            raise HttpSigError(f"cannot sign: {what} must be printable ASCII", "bad_input")
        return v

    params: list[tuple[str, Bare]] = [("created", created)]
    if expires is not None:
        params.append(("expires", expires))
    params.append(("keyid", text(keyid if keyid is not None else key.kid, "keyid")))
    if include_alg:
        params.append(("alg", alg_name))
    if nonce is not None:
        params.append(("nonce", text(nonce, "nonce")))
    if tag is not None:
        params.append(("tag", text(tag, "tag")))
    for _, v in params:
        if isinstance(v, int) and not -MAX_INT <= v <= MAX_INT:
            raise HttpSigError("cannot sign: created and expires must have at most 15 digits", "bad_input")
    inner = ser_inner(items, params)
    base = _base(r, items, inner)
    sig = key.sign(base.encode())
    return Signed(f"{label}={inner}", f"{label}=:{base64.b64encode(sig).decode()}:")


def content_digest(body: bytes) -> str:
    """The RFC 9530 `Content-Digest` of `body` with SHA-256."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def signature_base(*, method: str, url: str, headers: Sequence[tuple[str, str]], label: str) -> str:
    """The signature base (RFC 9421 §2.5) of the `Signature-Input` member `label`, with
    the same parsing, canonical-form and component rules as `verify`; checks no
    signature (diagnostics and test vectors)."""
    r = _Resolved(method, url, headers, DEFAULT_MAX_HEADER_BYTES)
    if not r.signature_input:
        raise HttpSigError("missing `Signature-Input` header", "missing_header")
    entry = next((e for e in parse_dictionary(r.signature_input, "Signature-Input") if e.key == label), None)
    if entry is None:
        raise HttpSigError(f"no `{_shown(label)}` member in `Signature-Input`", "missing_label")
    if entry.inner is None:
        raise HttpSigError(f"`Signature-Input` member `{entry.key}` is not an inner list", "bad_member")
    canonical = ser_inner(entry.inner, entry.params)
    if canonical != r.signature_input[entry.text[0] : entry.text[1]]:
        raise HttpSigError(
            f"`Signature-Input` member `{entry.key}` is not canonically serialized (RFC 8941 §4.1)", "non_canonical"
        )
    _covered(entry.inner)
    return _base(r, entry.inner, canonical)
