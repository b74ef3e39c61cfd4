"""The three-party flow against the real registry: an issuer registers an agent with
its own key, the agent proves possession on requests to an example receiver built
with this SDK (FastAPI and Flask, offline and online), the issuer revokes, and the
receiver refuses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import Registry, Served, serve_asgi, serve_wsgi

from bonafide import DPoPAuth, MessageSignatureAuth, PrivateKey, RegistryClient

FLAVOURS = ["fastapi-offline", "flask-offline", "fastapi-online", "flask-online"]


@pytest.fixture(scope="module")
def keys(registry: Registry) -> dict[str, str]:
    issuer = registry.call("POST", "/v1/issuers", registry.admin_key, json={"name": "apexwealth.example"})
    receiver = registry.call("POST", "/v1/receivers", registry.admin_key, json={"name": "api.shop.example"})
    return {"issuer": issuer["api_key"], "receiver": receiver["api_key"]}


@pytest.fixture(params=FLAVOURS)
def receiver(request: pytest.FixtureRequest, registry: Registry, keys: dict[str, str]) -> Iterator[Served]:
    framework, mode = request.param.split("-")
    api_key = keys["receiver"] if mode == "online" else None
    if framework == "fastapi":
        import fastapi_receiver

        served = serve_asgi(lambda url: fastapi_receiver.make_app(registry.url, url, api_key))
    else:
        import flask_receiver

        served = serve_wsgi(lambda url: flask_receiver.make_app(registry.url, url, api_key))
    served.mode = mode  # type: ignore[attr-defined]
    yield served
    served.stop()


def register(registry: Registry, issuer_key: str, name: str, key: PrivateKey | None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "scopes": ["read:portfolio"], "expiry_seconds": 3600}
    if key is not None:
        body["public_key"] = key.public_jwk()
    agent: dict[str, Any] = registry.call("POST", "/v1/agents/register", issuer_key, json=body)
    return agent


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["error"]["code"]
    return code


def test_register_prove_revoke_refused(registry: Registry, keys: dict[str, str], receiver: Served) -> None:
    key = PrivateKey.generate("EdDSA")
    agent = register(registry, keys["issuer"], "PortfolioBot", key)
    token = agent["token"]
    hello = receiver.url + "/hello"

    # Possession proved with DPoP.
    r = httpx.get(hello, auth=DPoPAuth(token, key), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["agent"] == agent["agent_id"]
    assert r.json()["delegation"] == [agent["agent_id"]]

    # The same proof again: a replay (this receiver's cache offline, the registry's online).
    proof_headers = {"authorization": f"DPoP {token}", "dpop": DPoPAuth(token, key).proof("GET", hello)}
    assert httpx.get(hello, headers=proof_headers, timeout=10).status_code == 200
    again = httpx.get(hello, headers=proof_headers, timeout=10)
    assert again.status_code == 401 and error_code(again) == "REPLAY", again.text

    # A bound token without its proof is not a bearer token.
    bare = httpx.get(hello, headers={"authorization": f"Bearer {token}"}, timeout=10)
    assert bare.status_code == 401 and error_code(bare) == "PROOF_REQUIRED", bare.text
    if receiver.mode == "offline":  # type: ignore[attr-defined]
        # RFC 9449 §7.1 (online, the registry's refusal comes back as a Bearer challenge,
        # as the Rust layer answers it).
        assert bare.headers["www-authenticate"].startswith("DPoP ")

    # A proof by another key.
    other = httpx.get(hello, auth=DPoPAuth(token, PrivateKey.generate("EdDSA")), timeout=10)
    assert other.status_code == 401 and error_code(other) == "PROOF_INVALID", other.text

    # Possession proved with an HTTP message signature (Web Bot Auth).
    signed = httpx.get(hello + "?x=1", auth=MessageSignatureAuth(token, key), timeout=10)
    assert signed.status_code == 200, signed.text

    # The issuer revokes the token: the receiver refuses it (at once online; offline
    # within the status list's ttl, 1 s here, and the receiver's 5 s refetch bound).
    registry.call("POST", "/v1/tokens/revoke", keys["issuer"], json={"jti": agent["jti"]})
    deadline = time.monotonic() + (2 if receiver.mode == "online" else 20)  # type: ignore[attr-defined]
    while True:
        r = httpx.get(hello, auth=DPoPAuth(token, key), timeout=10)
        if r.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED", r.text


def test_delegated_token(registry: Registry, keys: dict[str, str], receiver: Served) -> None:
    root_key, sub_key = PrivateKey.generate("EdDSA"), PrivateKey.generate("ES256")
    root = register(registry, keys["issuer"], "PortfolioBot", root_key)
    sub = register(registry, keys["issuer"], "Researcher", sub_key)
    client = RegistryClient(registry.url, keys["issuer"])
    child = client.exchange_token(root["token"], sub["token"], scope=["read:portfolio"])
    r = httpx.get(receiver.url + "/hello", auth=DPoPAuth(child["access_token"], sub_key), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["delegation"] == [root["agent_id"], sub["agent_id"]]
    # The root's key cannot present the child (bound to the sub-agent's key).
    wrong = httpx.get(receiver.url + "/hello", auth=DPoPAuth(child["access_token"], root_key), timeout=10)
    assert wrong.status_code == 401 and error_code(wrong) == "PROOF_INVALID", wrong.text


def test_missing_and_garbage_tokens(receiver: Served) -> None:
    r = httpx.get(receiver.url + "/hello", timeout=10)
    assert r.status_code == 401 and error_code(r) == "TOKEN_MISSING"
    r = httpx.get(receiver.url + "/hello", headers={"authorization": "Bearer not.a.token"}, timeout=10)
    assert r.status_code == 401 and error_code(r) == "TOKEN_INVALID", r.text


def test_a_widening_exchange_is_refused_by_the_registry(registry: Registry, keys: dict[str, str]) -> None:
    # The narrowing rule is the registry's (POST /v1/token): the agent sees its refusal.
    from bonafide import RegistryError

    root = register(registry, keys["issuer"], "PortfolioBot", PrivateKey.generate("EdDSA"))
    sub = register(registry, keys["issuer"], "Researcher", PrivateKey.generate("EdDSA"))
    client = RegistryClient(registry.url, keys["issuer"])
    with pytest.raises(RegistryError) as e:
        client.exchange_token(root["token"], sub["token"], scope=["payments:write"])
    assert e.value.status == 400 and e.value.code == "DELEGATION_WIDENS", str(e.value)
    with pytest.raises(RegistryError) as e:
        client.exchange_token(root["token"], root["token"], scope=["read:portfolio"])
    assert e.value.code == "DELEGATION_LOOP", str(e.value)


README_RECEIVERS = [
    ("sdks/python/README.md", "## A receiver in twenty lines (FastAPI)"),
    ("README.md", "## Python SDK (sdks/python)"),
]


@pytest.mark.parametrize(("readme", "heading"), README_RECEIVERS)
def test_the_readme_receiver_runs(registry: Registry, keys: dict[str, str], readme: str, heading: str) -> None:
    """The README's receiver as written (its registry and public URL replaced by the
    test's), served, and called as an agent: it passes a proof and refuses its replay."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / readme).read_text()
    at = text.index(heading + "\n")
    block = re.search(r"```python\n(.*?)```", text[at:], re.S)
    assert block is not None, f"{readme} lost its receiver"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 20, f"{readme}: the receiver is longer than twenty lines"
    assert '"http://127.0.0.1:8080"' in code and '"http://127.0.0.1:3000"' in code, f"{readme}: its URLs moved"

    def make(url: str) -> Any:
        scope: dict[str, Any] = {"__name__": "readme_receiver"}
        src = code.replace('"http://127.0.0.1:8080"', repr(registry.url)).replace('"http://127.0.0.1:3000"', repr(url))
        exec(compile(src, readme, "exec"), scope)
        return scope["app"]

    served = serve_asgi(make)
    try:
        hello = served.url + "/hello"
        r = httpx.get(hello, timeout=10)
        assert r.status_code == 401 and error_code(r) == "TOKEN_MISSING", r.text
        key = PrivateKey.generate("EdDSA")
        agent = register(registry, keys["issuer"], "ReadmeBot", key)
        r = httpx.get(hello, auth=DPoPAuth(agent["token"], key), timeout=10)
        assert r.status_code == 200, r.text
        assert r.json() == {"hello": "ReadmeBot", "agent": agent["agent_id"]}
        auth = DPoPAuth(agent["token"], key)
        headers = {"authorization": f"DPoP {agent['token']}", "dpop": auth.proof("GET", hello)}
        assert httpx.get(hello, headers=headers, timeout=10).status_code == 200
        again = httpx.get(hello, headers=headers, timeout=10)
        assert again.status_code == 401 and error_code(again) == "REPLAY", again.text
    finally:
        served.stop()
