"""WSGI middleware (Flask, any WSGI app): every request is authenticated before the app
sees it; the `VerifiedAgent` is put in `environ["bonafide.agent"]` (Flask:
`bonafide.flask.current_agent()`); a refusal is answered here as
`{"error":{"code","message"}}` with its status and `WWW-Authenticate` challenge.

WSGI servers join repeated headers with `, ` before the app sees them, so a request
with two `Authorization` headers reaches this layer as one (the token is then not a
token, and is refused as `TOKEN_INVALID`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote

from .receiver import Receiver, ReceiverConfig, Rejection, VerifiedAgent

ENVIRON_KEY = "bonafide.agent"
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
_REASONS = {401: "Unauthorized", 503: "Service Unavailable"}


def request_parts(environ: dict[str, Any]) -> tuple[str, str, str | None, list[tuple[str, str]]]:
    """(method, path as sent, query or None, headers) of a WSGI environ."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        raw = str(raw)
        if raw.startswith(("http://", "https://")):
            # An absolute-form request line (RFC 9112 §3.2.2): the path starts after
            # the authority.
            slash = raw.find("/", raw.index("//") + 2)
            raw = raw[slash:] if slash >= 0 else "/"
        path, sep, query = raw.partition("?")
        q: str | None = query if sep and query else None
    else:
        path = quote(
            (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
            .encode("latin-1")
            .decode("utf-8", "replace"),
            safe="/:@!$&'()*+,;=-._~",
        )
        q = environ.get("QUERY_STRING") or None
    headers: list[tuple[str, str]] = []
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            headers.append((k[5:].replace("_", "-").lower(), v))
        elif k in ("CONTENT_TYPE", "CONTENT_LENGTH") and v:
            headers.append((k.replace("_", "-").lower(), v))
    return environ.get("REQUEST_METHOD", "GET"), path or "/", q, headers


class BonafideWSGIMiddleware:
    """`app.wsgi_app = BonafideWSGIMiddleware(app.wsgi_app, receiver=Receiver(config))`
    (or `config=…`). `exclude_paths`: exact paths served without an agent."""

    def __init__(
        self,
        app: WSGIApp,
        receiver: Receiver | None = None,
        config: ReceiverConfig | None = None,
        exclude_paths: Sequence[str] = (),
    ) -> None:
        if (receiver is None) == (config is None):
            raise ValueError("pass either `receiver` or `config`")
        self.app = app
        self.receiver = receiver if receiver is not None else Receiver(config)  # type: ignore[arg-type]
        self.exclude = frozenset(exclude_paths)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in self.exclude:
            return self.app(environ, start_response)
        method, path, query, headers = request_parts(environ)
        try:
            agent = self.receiver.authenticate(method, path, query, headers)
        except Rejection as r:
            body = json.dumps(r.body()).encode()
            start_response(
                f"{r.status} {_REASONS.get(r.status, 'Error')}",
                [*r.headers(), ("content-length", str(len(body)))],
            )
            return [body]
        environ[ENVIRON_KEY] = agent
        return self.app(environ, start_response)


def agent_of(environ: dict[str, Any]) -> VerifiedAgent | None:
    agent = environ.get(ENVIRON_KEY)
    return agent if isinstance(agent, VerifiedAgent) else None
