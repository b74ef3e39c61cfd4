"""Benchmarks of the Python SDK (bench/RESULTS.md, "Python SDK"), interleaved: each
round runs every variant `PER` times in rotating order and the figure is the median,
over rounds, of the per-round ratio, so a machine whose speed drifts (a shared VM)
affects both sides of a ratio alike.

1. verify: `Receiver.authenticate` of a DPoP-bound token with its proof (two
   signatures: the registry's on the token, the agent's on the proof; token
   extraction, header checks, claims, proof, replay cache, `VerifiedAgent`) against
   the SDK's underlying library (`cryptography`) verifying the bare JWS: split,
   base64url, one Ed25519 signature, `json.loads` of the payload. Goal ≤ 2.2×.
2. middleware: a hello-world handler behind `BonafideMiddleware` (FastAPI, ASGI) and
   `BonafideWSGIMiddleware` (Flask), called in-process, against the same app without
   the middleware whose handler calls `authenticate` itself on the same headers (the
   same verification: the ratio is what the middleware adds). Goal ≤ 1.15×.

Run: `.venv/bin/python bench/bench.py [ROUNDS]` from sdks/python (`BENCH_CLOCK=wall`
to time with the wall clock instead of the process's CPU time).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import FastAPI, Request
from flask import Flask, request

from bonafide import AsyncReceiver, DPoPAuth, PrivateKey, Receiver, ReceiverConfig
from bonafide.asgi import BonafideMiddleware, agent_of
from bonafide.wsgi import BonafideWSGIMiddleware
from bonafide.wsgi import agent_of as wsgi_agent_of
from helpers import REGISTRY, agent_claims, sign_jws

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
# This process's CPU time by default: on a shared VM (other builds on the same two
# vCPUs) wall time mostly measures the wait for a CPU. BENCH_CLOCK=wall for wall time.
CLOCK = time.perf_counter_ns if os.environ.get("BENCH_CLOCK") == "wall" else time.process_time_ns
PER = 20
BASE = "https://api.example"
REG = PrivateKey.generate("EdDSA")
JWKS = {"keys": [REG.public_key.jwk]}


def interleaved(
    variants: dict[str, Callable[[int], None]], setup: Callable[[int], None] | None = None
) -> dict[str, list[float]]:
    """Per-call µs of each variant, one median per round."""
    per_round: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(ROUNDS):
        if setup is not None:
            setup(r)
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = variants[name]
            t0 = CLOCK()
            for i in range(PER):
                fn(i)
            per_round[name].append((CLOCK() - t0) / PER / 1000)
    return per_round


def report(title: str, rounds: dict[str, list[float]], num: str, den: str) -> None:
    ratios = [a / b for a, b in zip(rounds[num], rounds[den], strict=True)]
    print(f"## {title}")
    for k, v in rounds.items():
        print(f"  {k:32s} median {statistics.median(v):8.1f} µs")
    print(
        f"  ratio {num} / {den}: median {statistics.median(ratios):.3f} (p25 {statistics.quantiles(ratios, n=4)[0]:.3f}, p75 {statistics.quantiles(ratios, n=4)[2]:.3f})"
    )


def bench_verify() -> None:
    agent_key = PrivateKey.generate("EdDSA")
    token = sign_jws(REG, "agent+jwt", agent_claims(cnf={"jkt": agent_key.kid}, exp=int(time.time()) + 3600))
    bare = sign_jws(REG, "agent+jwt", agent_claims())
    pub = ed25519.Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(REG.public_key.jwk["x"] + "="))
    receiver = Receiver(ReceiverConfig.offline(REGISTRY, jwks=JWKS, public_base_url=BASE))
    auth = DPoPAuth(token, agent_key)
    proofs: list[list[tuple[str, str]]] = []

    def setup(_r: int) -> None:
        proofs.clear()
        for _ in range(PER):  # fresh proofs (single use), made untimed
            proofs.append([("authorization", f"DPoP {token}"), ("dpop", auth.proof("POST", BASE + "/orders"))])

    def sdk(i: int) -> None:
        receiver.authenticate("POST", "/orders", None, proofs[i])

    def library(_i: int) -> None:
        h, p, s = bare.split(".")
        pub.verify(base64.urlsafe_b64decode(s + "=="), f"{h}.{p}".encode())
        json.loads(base64.urlsafe_b64decode(p + "=="))

    report(
        "offline verify, DPoP-bound token + proof vs bare JWS (EdDSA)",
        interleaved({"sdk_dpop": sdk, "cryptography_bare_jws": library}, setup),
        "sdk_dpop",
        "cryptography_bare_jws",
    )


def bench_asgi() -> None:
    token = sign_jws(REG, "agent+jwt", agent_claims(exp=int(time.time()) + 3600))
    config = ReceiverConfig.offline(REGISTRY, jwks=JWKS, public_base_url=BASE)
    with_mw = FastAPI()
    with_mw.add_middleware(BonafideMiddleware, config=config)

    @with_mw.get("/hello")
    async def hello(request: Request) -> str:
        agent = agent_of(request.scope)
        assert agent is not None
        return f"hello {agent.name}"

    direct_receiver = AsyncReceiver(config)
    plain = FastAPI()

    @plain.get("/hello")
    async def hello_direct(request: Request) -> str:
        agent = await direct_receiver.authenticate(
            request.method, request.url.path, None, [(k, v) for k, v in request.headers.items()]
        )
        return f"hello {agent.name}"

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/hello",
        "raw_path": b"/hello",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"api.example"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 443),
    }
    loop = asyncio.new_event_loop()

    async def call(app: Any) -> None:
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                status.append(msg["status"])

        await app(dict(scope), receive, send)
        assert status == [200], status

    bare = FastAPI()

    @bare.get("/hello")
    async def hello_bare() -> str:
        return "hello"

    def mw(_i: int) -> None:
        loop.run_until_complete(call(with_mw))

    def direct(_i: int) -> None:
        loop.run_until_complete(call(plain))

    def unauthenticated(_i: int) -> None:
        loop.run_until_complete(call(bare))

    report(
        "FastAPI hello world: BonafideMiddleware vs authenticate in the handler (bearer, EdDSA)",
        interleaved({"middleware": mw, "direct": direct, "no_verification": unauthenticated}),
        "middleware",
        "direct",
    )


def bench_wsgi() -> None:
    token = sign_jws(REG, "agent+jwt", agent_claims(exp=int(time.time()) + 3600))
    config = ReceiverConfig.offline(REGISTRY, jwks=JWKS, public_base_url=BASE)
    with_mw = Flask("with_mw")
    with_mw.wsgi_app = BonafideWSGIMiddleware(with_mw.wsgi_app, config=config)  # type: ignore[method-assign]

    @with_mw.get("/hello")
    def hello() -> str:
        agent = wsgi_agent_of(request.environ)
        assert agent is not None
        return f"hello {agent.name}"

    direct_receiver = Receiver(config)
    plain = Flask("plain")

    @plain.get("/hello")
    def hello_direct() -> str:
        agent = direct_receiver.authenticate(request.method, request.path, None, list(request.headers.items()))
        return f"hello {agent.name}"

    bare = Flask("bare")

    @bare.get("/hello")
    def hello_bare() -> str:
        return "hello"

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/hello",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "api.example",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "https",
        "wsgi.input": None,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        "HTTP_HOST": "api.example",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
    }

    def call(app: Any) -> None:
        status: list[str] = []
        body = b"".join(app(dict(environ), lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), (status, body)

    report(
        "Flask hello world: BonafideWSGIMiddleware vs authenticate in the view (bearer, EdDSA)",
        interleaved(
            {
                "middleware": lambda i: call(with_mw),
                "direct": lambda i: call(plain),
                "no_verification": lambda i: call(bare),
            }
        ),
        "middleware",
        "direct",
    )


if __name__ == "__main__":
    clock = "wall" if CLOCK is time.perf_counter_ns else "CPU"
    print(f"python {sys.version.split()[0]}, {ROUNDS} rounds × {PER} calls per variant, {clock} time")
    bench_verify()
    bench_asgi()
    bench_wsgi()
