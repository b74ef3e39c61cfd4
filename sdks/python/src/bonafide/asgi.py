"""ASGI middleware (FastAPI, Starlette, any ASGI app): every HTTP request is
authenticated before the app sees it; the `VerifiedAgent` is put in the scope
(`scope["state"]["bonafide_agent"]`, so Starlette's `request.state.bonafide_agent`,
and `scope["bonafide.agent"]`); a refusal is answered here as
`{"error":{"code","message"}}` with its status and `WWW-Authenticate` challenge.
WebSocket handshakes are authenticated the same way (refused: closed with 1008)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import quote

from .receiver import AsyncReceiver, ReceiverConfig, Rejection, VerifiedAgent

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
SCOPE_KEY = "bonafide.agent"
STATE_KEY = "bonafide_agent"


def request_parts(scope: Scope) -> tuple[str, str, str | None, list[tuple[str, str]]]:
    """(method, path as sent, query or None, headers) of an ASGI HTTP scope."""
    raw = scope.get("raw_path")
    path = (
        raw.decode("latin-1") if raw else quote(scope.get("root_path", "") + scope["path"], safe="/:@!$&'()*+,;=-._~")
    )
    path = path.split("?", 1)[0]
    qs = scope.get("query_string", b"").decode("latin-1")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
    return scope.get("method", "GET"), path, (qs or None), headers


class BonafideMiddleware:
    """`app.add_middleware(BonafideMiddleware, receiver=AsyncReceiver(config))` (or
    `config=ReceiverConfig…`). `exclude_paths`: exact paths served without an agent
    (health checks)."""

    def __init__(
        self,
        app: ASGIApp,
        receiver: AsyncReceiver | None = None,
        config: ReceiverConfig | None = None,
        exclude_paths: Sequence[str] = (),
    ) -> None:
        if (receiver is None) == (config is None):
            raise ValueError("pass either `receiver` or `config`")
        self.app = app
        self.receiver = receiver if receiver is not None else AsyncReceiver(config)  # type: ignore[arg-type]
        self.exclude = frozenset(exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self.exclude:
            await self.app(scope, receive, send)
            return
        method, path, query, headers = request_parts(scope)
        if scope["type"] == "websocket":
            method = "GET"
        try:
            agent = await self.receiver.authenticate(method, path, query, headers)
        except Rejection as r:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": r.code})
                return
            await send_rejection(send, r)
            return
        scope[SCOPE_KEY] = agent
        scope.setdefault("state", {})[STATE_KEY] = agent
        await self.app(scope, receive, send)


async def send_rejection(send: Send, r: Rejection) -> None:
    body = json.dumps(r.body()).encode()
    headers = [(k.encode(), v.encode()) for k, v in r.headers()]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": r.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def agent_of(scope: Scope) -> VerifiedAgent | None:
    """The agent the middleware verified for this request, if any."""
    agent = scope.get(SCOPE_KEY)
    return agent if isinstance(agent, VerifiedAgent) else None
