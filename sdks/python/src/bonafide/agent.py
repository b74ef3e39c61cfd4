"""The agent's side: prove possession of its key on every request (a DPoP proof, or an
HTTP message signature in the Web Bot Auth profile) as `httpx` auth classes, and the
registry calls an agent (or its issuer) makes: token exchange for a sub-agent."""

from __future__ import annotations

import secrets
import time
from collections.abc import Generator, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx

from . import dpop, httpsig
from .errors import RegistryError
from .keys import PrivateKey

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def _htu(url: httpx.URL) -> str:
    return str(url.copy_with(query=None, fragment=None))


class DPoPAuth(httpx.Auth):
    """`Authorization: DPoP <token>` and a fresh DPoP proof for each request (`htm` the
    method, `htu` the URL without query and fragment, `ath` the token's hash).

    `httpx.Client(auth=DPoPAuth(token, key))`."""

    def __init__(self, token: str, key: PrivateKey) -> None:
        self.token = token
        self.key = key

    def proof(self, method: str, url: str) -> str:
        return dpop.sign(self.key, htm=method, htu=url, access_token=self.token, iat=int(time.time()))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = self.proof(request.method, _htu(request.url))
        yield request


class MessageSignatureAuth(httpx.Auth):
    """Signs each request (RFC 9421, Web Bot Auth: `tag="web-bot-auth"`, `keyid` = the
    key's thumbprint, a random `nonce`, `created`/`expires`) over `@method`,
    `@authority`, `@path`, `@query` (`?` without one), `Content-Digest` (added, RFC 9530)
    when there is a body, and `Signature-Agent` when given; the token goes as
    `Authorization: Bearer` (or `X-Agent-Token` with `header="x-agent-token"`)."""

    requires_request_body = True

    def __init__(
        self,
        token: str | None,
        key: PrivateKey,
        *,
        signature_agent: str | None = None,
        lifetime_s: int = 60,
        header: str = "authorization",
    ) -> None:
        if lifetime_s <= 0:
            raise ValueError("lifetime_s must be positive")
        self.token = token
        self.key = key
        self.signature_agent = signature_agent
        self.lifetime_s = lifetime_s
        self.header = header.lower()

    def sign(self, request: httpx.Request) -> None:
        if self.token is not None:
            if self.header == "authorization":
                request.headers["Authorization"] = f"Bearer {self.token}"
            else:
                request.headers[self.header] = self.token
        # `@query` always (`?` when there is none), so a query cannot be added on the way.
        components: list[str] = ["@method", "@authority", "@path", "@query"]
        body = request.content
        if body:
            request.headers["Content-Digest"] = httpsig.content_digest(body)
            components.append("content-digest")
        if self.signature_agent is not None:
            request.headers["Signature-Agent"] = self.signature_agent
            components.append("signature-agent")
        now = int(time.time())
        signed = httpsig.sign(
            self.key,
            method=request.method,
            url=str(request.url.copy_with(fragment=None)),
            headers=list(request.headers.items()),
            components=components,
            created=now,
            expires=now + self.lifetime_s,
            nonce=secrets.token_urlsafe(16),
        )
        request.headers["Signature-Input"] = signed.signature_input
        request.headers["Signature"] = signed.signature

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request


class RegistryClient:
    """A few calls to the registry's HTTP API (README "HTTP API (v1)"), with an API key
    sent as a bearer (a receiver key to verify and spend, an issuer key to exchange)."""

    def __init__(self, registry_url: str, api_key: str | None = None, *, client: httpx.Client | None = None) -> None:
        self.base = registry_url.rstrip("/")
        self.api_key = api_key
        self.http = client or httpx.Client(timeout=10.0, follow_redirects=False)

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _json(self, resp: httpx.Response) -> Any:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            err = body.get("error") if isinstance(body, dict) else None
            if isinstance(err, dict):
                raise RegistryError(
                    f"{err.get('code')}: {err.get('message')} (HTTP {resp.status_code})",
                    status=resp.status_code,
                    code=err.get("code"),
                    request_id=err.get("request_id"),
                )
            if isinstance(body, dict) and isinstance(err, str):  # the OAuth shape of /v1/token
                raise RegistryError(
                    f"{body.get('code') or err}: {body.get('error_description')} (HTTP {resp.status_code})",
                    status=resp.status_code,
                    code=body.get("code") or err,
                    request_id=body.get("request_id"),
                )
            raise RegistryError(f"the registry answered HTTP {resp.status_code}", status=resp.status_code)
        return body

    def post(self, path: str, body: Any) -> Any:
        try:
            resp = self.http.post(self.base + path, json=body, headers=self._headers())
        except httpx.HTTPError as e:
            raise RegistryError(f"POST {path} failed: {e}") from None
        return self._json(resp)

    def verify(
        self,
        token: str,
        *,
        audience: str | None = None,
        scopes: Sequence[str] | None = None,
        action: str | None = None,
        resource: tuple[str, str] | None = None,
        amount: str | int | None = None,
        currency: str | None = None,
        idempotency_key: str | None = None,
        proof: dict[str, Any] | None = None,
        simulate: bool = False,
    ) -> dict[str, Any]:
        """`POST /v1/verify` (or `/v1/simulate`): the registry's decision, policy and
        budget included; a spend (`amount`) is charged here, and only here."""
        body: dict[str, Any] = {"token": token}
        for k, v in (
            ("audience", audience),
            ("action", action),
            ("amount", amount),
            ("currency", currency),
            ("idempotency_key", idempotency_key),
            ("proof", proof),
        ):
            if v is not None:
                body[k] = v
        if scopes is not None:
            body["scopes_requested"] = list(scopes)
        if resource is not None:
            body["resource"] = {"type": resource[0], "id": resource[1]}
        out: dict[str, Any] = self.post("/v1/simulate" if simulate else "/v1/verify", body)
        return out

    def exchange_token(
        self,
        subject_token: str,
        actor_token: str,
        *,
        scope: Sequence[str] | None = None,
        audience: Sequence[str] | None = None,
        expires_in: int | None = None,
        policy: str | None = None,
    ) -> dict[str, Any]:
        """RFC 8693 token exchange (`POST /v1/token`, the issuer's key): a narrower child
        token for a sub-agent → `{access_token, expires_in, scope, jti, …}`."""
        form: list[tuple[str, str]] = [
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject_token),
            ("subject_token_type", JWT_TOKEN_TYPE),
            ("actor_token", actor_token),
            ("actor_token_type", JWT_TOKEN_TYPE),
        ]
        if scope is not None:
            form.append(("scope", " ".join(scope)))
        for a in audience or ():
            form.append(("audience", a))
        if expires_in is not None:
            form.append(("expires_in", str(expires_in)))
        if policy is not None:
            form.append(("policy", policy))
        headers = {**self._headers(), "content-type": "application/x-www-form-urlencoded"}
        try:
            resp = self.http.post(self.base + "/v1/token", content=urlencode(form).encode(), headers=headers)
        except httpx.HTTPError as e:
            raise RegistryError(f"POST /v1/token failed: {e}") from None
        out: dict[str, Any] = self._json(resp)
        return out

    def close(self) -> None:
        self.http.close()
