"""Sans-IO plumbing: the verification logic is written once as generators that yield
what they need from the network (`Fetch`, `Sleep`) and get `Response`s back; a sync
driver (httpx.Client, for WSGI) and an async one (httpx.AsyncClient, for ASGI) run it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

T = TypeVar("T")
FETCH_TIMEOUT = 10.0
MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class Fetch:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    max_bytes: int = MAX_BODY


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Response:
    status: int  # 0: no answer (`error` says why)
    headers: Mapping[str, str]
    body: bytes
    error: str | None = None

    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


Op = Fetch | Sleep
Gen = Generator[Op, Response | None, T]


def is_loopback_http(url: str) -> bool:
    """`http://` on a loopback host (127.0.0.0/8, localhost, [::1])."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    return parts.scheme == "http" and (host == "localhost" or host == "::1" or host.startswith("127."))


def check_fetch_url(url: str) -> None:
    """Keys and lists are fetched over https, or plain http on loopback only."""
    if not (url.startswith("https://") or is_loopback_http(url)):
        raise ValueError(f"`{url[:200]}` must be https (plain http only on loopback)")


def _sync_fetch(client: httpx.Client, op: Fetch) -> Response:
    try:
        with client.stream(op.method, op.url, headers=dict(op.headers), content=op.body) as r:
            body = bytearray()
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > op.max_bytes:
                    return Response(0, {}, b"", f"the answer of {op.url} is over {op.max_bytes} bytes")
            return Response(r.status_code, {k.lower(): v for k, v in r.headers.items()}, bytes(body))
    except httpx.HTTPError as e:
        return Response(0, {}, b"", f"{op.method} {op.url} failed: {e or type(e).__name__}")


async def _async_fetch(client: httpx.AsyncClient, op: Fetch) -> Response:
    try:
        async with client.stream(op.method, op.url, headers=dict(op.headers), content=op.body) as r:
            body = bytearray()
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) > op.max_bytes:
                    return Response(0, {}, b"", f"the answer of {op.url} is over {op.max_bytes} bytes")
            return Response(r.status_code, {k.lower(): v for k, v in r.headers.items()}, bytes(body))
    except httpx.HTTPError as e:
        return Response(0, {}, b"", f"{op.method} {op.url} failed: {e or type(e).__name__}")


def run_sync(gen: Gen[T], client: httpx.Client) -> T:
    reply: Response | None = None
    try:
        while True:
            op = gen.send(reply)
            if isinstance(op, Sleep):
                time.sleep(op.seconds)
                reply = None
            else:
                reply = _sync_fetch(client, op)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def run_async(gen: Gen[T], client: httpx.AsyncClient) -> T:
    reply: Response | None = None
    try:
        while True:
            op = gen.send(reply)
            if isinstance(op, Sleep):
                await asyncio.sleep(op.seconds)
                reply = None
            else:
                reply = await _async_fetch(client, op)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def new_sync_client(**kw: Any) -> httpx.Client:
    return httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=False, **kw)


def new_async_client(**kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False, **kw)
