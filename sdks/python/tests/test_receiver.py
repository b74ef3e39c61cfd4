"""The receiver's rules, with a throwaway registry key and, where the receiver fetches
something, an in-process HTTP transport standing in for the registry's documents."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bonafide import AsyncReceiver, DPoPAuth, MessageSignatureAuth, PrivateKey, Receiver, ReceiverConfig, Rejection
from bonafide.receiver import ReplayCache
from bonafide.status import StatusListConfig
from helpers import REGISTRY, agent_claims, rand_id, sign_jws, status_list_token

BASE = "https://api.example"
REG_KEY = PrivateKey.generate("EdDSA")
JWKS = {"keys": [REG_KEY.public_key.jwk]}


def token(**over: Any) -> str:
    return sign_jws(REG_KEY, "agent+jwt", agent_claims(**over))


def receiver(**kw: Any) -> Receiver:
    config = ReceiverConfig.offline(REGISTRY, jwks=JWKS, public_base_url=BASE, agent_keys_from_registry=False)
    return Receiver(ReceiverConfig(**{**{f: getattr(config, f) for f in config.__dataclass_fields__}, **kw}))


def auth_headers(auth: httpx.Auth, url: str, method: str = "GET") -> list[tuple[str, str]]:
    req = httpx.Request(method, url)
    flow = auth.sync_auth_flow(req)
    signed = next(flow)
    return [(k, v) for k, v in signed.headers.items() if k not in ("host",)]


def bearer(r: Receiver, t: str) -> Any:
    return r.authenticate("GET", "/", None, [("authorization", f"Bearer {t}")])


def refused(fn: Callable[[], Any]) -> Rejection:
    with pytest.raises(Rejection) as e:
        fn()
    return e.value


def test_unbound_bearer_token() -> None:
    r = receiver()
    agent = r.authenticate("GET", "/hello", None, [("authorization", f"Bearer {token()}")])
    assert agent.proof is None and agent.bound_key is None
    assert agent.scopes == ("read:portfolio",) and agent.has_scope("read:portfolio")
    assert agent.delegation == (agent.agent_id,) and agent.actor == agent.agent_id
    assert agent.revocation_checked is False  # a static JWKS and no status lists


def test_token_finding() -> None:
    r = receiver()
    e = refused(lambda: r.authenticate("GET", "/", None, []))
    assert (e.status, e.code) == (401, "TOKEN_MISSING") and e.challenge is not None
    e = refused(lambda: r.authenticate("GET", "/", None, [("authorization", "Basic abc")]))
    assert e.code == "TOKEN_MISSING"
    t = token()
    two = [("authorization", f"Bearer {t}"), ("authorization", f"Bearer {t}")]
    assert refused(lambda: r.authenticate("GET", "/", None, two)).code == "TOKEN_INVALID"
    assert refused(lambda: r.authenticate("GET", "/", None, [("authorization", "Bearer ")])).code == "TOKEN_INVALID"
    # X-Agent-Token wins; Authorization is then the service's own.
    agent = r.authenticate("GET", "/", None, [("x-agent-token", t), ("authorization", "Basic c2VydmljZQ==")])
    assert agent.name == "PortfolioBot"
    e = refused(lambda: r.authenticate("GET", "/", None, [("authorization", "Bearer " + t[:-4] + "AAAA")]))
    assert e.code == "TOKEN_INVALID" and e.challenge == 'Bearer error="invalid_token"'


def test_token_refusals_carry_the_wire_codes() -> None:
    r = receiver(audience="https://api.example")
    now = int(time.time())
    cases = {
        "TOKEN_EXPIRED": token(iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "TOKEN_NOT_YET_VALID": token(nbf=now + 3600),
        "ISSUER_UNKNOWN": token(iss="https://evil.example"),
        "AUDIENCE_MISMATCH": token(aud=["https://other.example"]),
    }
    for code, t in cases.items():
        assert refused(functools.partial(bearer, r, t)).code == code
    assert r.authenticate("GET", "/", None, [("authorization", f"Bearer {token(aud='https://api.example')}")])


def test_dpop_bound_token() -> None:
    key = PrivateKey.generate("ES256")
    t = token(cnf={"jkt": key.kid})
    r = receiver()
    headers = auth_headers(DPoPAuth(t, key), BASE + "/orders?x=1", "POST")
    agent = r.authenticate("POST", "/orders", "x=1", headers)
    assert agent.proof == "dpop" and agent.bound_key == key.kid
    e = refused(lambda: r.authenticate("POST", "/orders", "x=1", headers))
    assert (e.code, e.challenge) == ("REPLAY", 'DPoP error="invalid_dpop_proof", algs="EdDSA ES256 RS256"')
    # Another path than the one signed, another method, another key.
    fresh = auth_headers(DPoPAuth(t, key), BASE + "/orders", "POST")
    assert refused(lambda: r.authenticate("POST", "/other", None, fresh)).code == "PROOF_INVALID"
    fresh = auth_headers(DPoPAuth(t, key), BASE + "/orders", "POST")
    assert refused(lambda: r.authenticate("GET", "/orders", None, fresh)).code == "PROOF_INVALID"
    wrong = auth_headers(DPoPAuth(t, PrivateKey.generate()), BASE + "/orders", "POST")
    assert refused(lambda: r.authenticate("POST", "/orders", None, wrong)).code == "PROOF_INVALID"
    # Without the proof header, and as a bearer token.
    no_proof = [("authorization", f"DPoP {t}")]
    assert refused(lambda: r.authenticate("POST", "/orders", None, no_proof)).code == "PROOF_REQUIRED"
    e = refused(lambda: r.authenticate("POST", "/orders", None, [("authorization", f"Bearer {t}")]))
    assert e.code == "PROOF_REQUIRED" and e.challenge is not None and e.challenge.startswith("DPoP ")


def test_dpop_needs_a_public_base_url_and_a_bound_token() -> None:
    key = PrivateKey.generate()
    t = token(cnf={"jkt": key.kid})
    r = receiver(public_base_url=None)
    e = refused(lambda: r.authenticate("GET", "/x", None, auth_headers(DPoPAuth(t, key), BASE + "/x")))
    assert e.code == "PROOF_INVALID" and "public base URL" in e.message
    unbound = token()
    e = refused(lambda: receiver().authenticate("GET", "/x", None, auth_headers(DPoPAuth(unbound, key), BASE + "/x")))
    assert e.code == "PROOF_INVALID" and "not bound" in e.message


def test_require_binding() -> None:
    e = refused(
        lambda: receiver(require_binding=True).authenticate("GET", "/", None, [("authorization", f"Bearer {token()}")])
    )
    assert e.code == "PROOF_REQUIRED"


def test_message_signature_with_a_resolver() -> None:
    key = PrivateKey.generate("EdDSA")
    t = token(cnf={"jkt": key.kid})
    seen: list[tuple[str, str]] = []

    def resolve(agent: str, jkt: str) -> Any:
        seen.append((agent, jkt))
        return key.public_key

    r = receiver(agent_key_resolver=resolve)
    req = httpx.Request("POST", BASE + "/pay?currency=EUR", content=b'{"amount":"1.00"}')
    signed = next(
        MessageSignatureAuth(t, key, signature_agent='sig1="https://registry.example/agents/x"').sync_auth_flow(req)
    )
    headers = [(k, v) for k, v in signed.headers.items()]
    agent = r.authenticate("POST", "/pay", "currency=EUR", headers)
    assert agent.proof == "http-signature" and seen == [(agent.agent_id, key.kid)]
    assert refused(lambda: r.authenticate("POST", "/pay", "currency=EUR", headers)).code == "REPLAY"
    # The query is covered: another one fails.
    req = httpx.Request("POST", BASE + "/pay?currency=EUR")
    headers = list(next(MessageSignatureAuth(t, key).sync_auth_flow(req)).headers.items())
    assert refused(lambda: r.authenticate("POST", "/pay", "currency=USD", headers)).code == "PROOF_INVALID"
    # A request sent without a query is signed as such: a query added on the way fails.
    req = httpx.Request("POST", BASE + "/pay")
    headers = list(next(MessageSignatureAuth(t, key).sync_auth_flow(req)).headers.items())
    assert refused(lambda: r.authenticate("POST", "/pay", "amount=1000", headers)).code == "PROOF_INVALID"
    # No source of agent keys: signatures cannot be checked.
    req = httpx.Request("GET", BASE + "/pay")
    headers = list(next(MessageSignatureAuth(t, key).sync_auth_flow(req)).headers.items())
    assert refused(lambda: receiver().authenticate("GET", "/pay", None, headers)).code == "PROOF_INVALID"


def test_policy_decision_for_display() -> None:
    from bonafide.policy import Policy

    pol = {
        "version": "pol.v0.2",
        "id": "pol_shop",
        "actions": ["payments.send"],
        "limits": {"per_txn": {"amount": "100.00", "currency": "USD"}},
    }
    p = Policy.from_value(pol)
    agent = receiver().authenticate(
        "GET", "/", None, [("authorization", f"Bearer {token(policy=pol, policy_hash=p.hash)}")]
    )
    assert agent.policy is not None and agent.policy.hash == p.hash
    ok = agent.policy_decision(action="payments.send", amount="40.00", currency="USD")
    assert ok is not None and ok.allowed
    no = agent.policy_decision(action="payments.send", amount="140.00", currency="USD")
    assert no is not None and no.codes == ["LIMIT_PER_TXN"]
    bad = token(policy=pol, policy_hash="sha256:" + "0" * 64)
    e = refused(lambda: receiver().authenticate("GET", "/", None, [("authorization", f"Bearer {bad}")]))
    assert e.code == "TOKEN_INVALID" and "policy" in e.message


def test_replay_cache_refuses_rather_than_evicts() -> None:
    c = ReplayCache(2)
    assert c.claim(1, "k", "a", 110, 100) is None
    assert c.claim(1, "k", "a", 110, 100) == "REPLAY"
    assert c.claim(2, "k", "a", 110, 100) is None  # another namespace
    assert c.claim(1, "k", "b", 110, 100) == "REPLAY_CACHE_FULL"
    assert c.claim(1, "k", "b", 130, 120) is None  # the old ones expired and were swept
    assert c.claim(1, "k", "a", 130, 120) is None  # forgotten after its window


def test_a_full_replay_cache_sweeps_at_most_once_a_second() -> None:
    # Entries expire by the second and are never inserted already expired, so a second
    # sweep within one second frees nothing: a flood at a full cache must not buy a
    # whole-cache pass (under the lock) per request.
    c = ReplayCache(1000)
    for i in range(1000):
        assert c.claim(1, "k", f"j{i}", 400, 100) is None
    before = c.sweeps
    for i in range(200):
        assert c.claim(1, "k", f"x{i}", 400, 101) == "REPLAY_CACHE_FULL"
    assert c.sweeps - before == 1
    assert c.claim(1, "k", "y", 500, 401) is None  # a new second: swept, room again


def test_jwks_never_loaded_is_refetched_at_most_every_min_refetch() -> None:
    # A registry down at start: each request must not trigger its own JWKS fetch (a
    # refetch flood anyone can drive with any string as a token).
    fake = Fake()
    fake.routes["/.well-known/jwks.json"] = lambda r: httpx.Response(
        503, json={"error": {"code": "X", "message": "down"}}
    )
    r = Receiver(ReceiverConfig.offline(REGISTRY, public_base_url=BASE, status_lists=False), client=fake.client())
    for _ in range(5):
        e = refused(lambda: r.authenticate("GET", "/", None, [("authorization", "Bearer x.y.z")]))
        assert (e.status, e.code) == (503, "KEYS_UNAVAILABLE")
    assert fake.hits["/.well-known/jwks.json"] == 1
    fake.routes["/.well-known/jwks.json"] = lambda r: httpx.Response(200, json=JWKS)
    r._core.jwks_fetched = time.monotonic() - 11  # as if the bound had passed
    assert r.authenticate("GET", "/", None, [("authorization", f"Bearer {token()}")])
    assert fake.hits["/.well-known/jwks.json"] == 2


class Fake:
    """The registry's documents served in-process (an httpx transport)."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[httpx.Request], httpx.Response]] = {}
        self.hits: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.hits[path] = self.hits.get(path, 0) + 1
        handler = self.routes.get(path)
        return (
            handler(request) if handler else httpx.Response(404, json={"error": {"code": "NOT_FOUND", "message": "no"}})
        )

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self), follow_redirects=False)


def test_unknown_kid_refetches_the_jwks_once() -> None:
    fake = Fake()
    keys = {"keys": [REG_KEY.public_key.jwk]}
    fake.routes["/.well-known/jwks.json"] = lambda r: httpx.Response(200, json=keys)
    config = ReceiverConfig.offline(REGISTRY, public_base_url=BASE, status_lists=False)
    r = Receiver(config, client=fake.client())
    r.start()
    assert r.authenticate("GET", "/", None, [("authorization", f"Bearer {token()}")])
    rotated = PrivateKey.generate()
    keys["keys"].append(rotated.public_key.jwk)
    t2 = sign_jws(rotated, "agent+jwt", agent_claims())
    # Fetched less than 10 s ago: no refetch yet, the token's key is unknown.
    assert (
        refused(lambda: r.authenticate("GET", "/", None, [("authorization", f"Bearer {t2}")])).code == "TOKEN_INVALID"
    )
    assert fake.hits["/.well-known/jwks.json"] == 1
    r._core.jwks_fetched = time.monotonic() - 11  # as if the bound had passed
    assert r.authenticate("GET", "/", None, [("authorization", f"Bearer {t2}")])
    assert fake.hits["/.well-known/jwks.json"] == 2


def status_setup(statuses: dict[int, int], **cfg: Any) -> tuple[Receiver, Fake, str]:
    fake = Fake()
    list_key = PrivateKey.generate()
    uri = REGISTRY + "/v1/status-lists/1"
    fake.routes["/.well-known/jwks.json"] = lambda r: httpx.Response(200, json=JWKS)
    fake.routes["/.well-known/status-list-jwks.json"] = lambda r: httpx.Response(
        200, json={"keys": [list_key.public_key.jwk]}
    )
    fake.routes["/v1/status-lists/1"] = lambda r: httpx.Response(
        200,
        content=status_list_token(list_key, uri, statuses),
        headers={"content-type": "application/statuslist+jwt", "etag": '"v1"'},
    )
    config = ReceiverConfig.offline(
        REGISTRY, public_base_url=BASE, status_lists=StatusListConfig.for_registry(REGISTRY, **cfg)
    )
    return Receiver(config, client=fake.client()), fake, uri


def test_status_lists() -> None:
    r, fake, uri = status_setup({3: 1, 4: 2})

    def call(idx: int, u: str = uri) -> Any:
        t = token(status={"status_list": {"idx": idx, "uri": u}})
        return r.authenticate("GET", "/", None, [("authorization", f"Bearer {t}")])

    agent = call(0)
    assert agent.revocation_checked and agent.status_list is not None and agent.status_list.state == "valid"
    assert refused(lambda: call(3)).code == "TOKEN_REVOKED"
    assert refused(lambda: call(4)).code == "AGENT_SUSPENDED"
    assert refused(lambda: call(10_000)).code == "TOKEN_INVALID"
    e = refused(lambda: call(0, "https://evil.example/v1/status-lists/1"))
    assert (e.status, e.code) == (401, "STATUS_LIST_UNTRUSTED")
    e = refused(lambda: call(0, REGISTRY + "/v1/status-lists/1?x=1"))
    assert e.code == "STATUS_LIST_UNTRUSTED"
    assert fake.hits["/v1/status-lists/1"] == 1  # cached for its ttl
    assert "/v1/status-lists/1?x=1" not in str(fake.hits)


def test_status_list_unavailable_fails_closed_or_open() -> None:
    for fail_open in (False, True):
        r, fake, uri = status_setup({}, fail_open=fail_open)
        fake.routes["/v1/status-lists/1"] = lambda req: httpx.Response(500)
        t = token(status={"status_list": {"idx": 0, "uri": uri}})
        if fail_open:
            agent = r.authenticate("GET", "/", None, [("authorization", f"Bearer {t}")])
            assert agent.revocation_checked is False and agent.status_list is not None
            assert agent.status_list.state == "unchecked"
        else:
            e = refused(functools.partial(bearer, r, t))
            assert (e.status, e.code, e.retry_after) == (503, "STATUS_LIST_UNAVAILABLE", 1)


def online_receiver(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[Receiver, list[dict[str, Any]]]:
    bodies: list[dict[str, Any]] = []
    fake = Fake()

    def verify(req: httpx.Request) -> httpx.Response:
        assert req.headers["authorization"] == "Bearer bfk_rcv_test"
        bodies.append(json.loads(req.content))
        return answer(req)

    fake.routes["/v1/verify"] = verify
    return Receiver(ReceiverConfig.online(REGISTRY, "bfk_rcv_test", public_base_url=BASE), client=fake.client()), bodies


def error_answer(status: int, req: httpx.Request) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": "X", "message": "m"}})


def test_online_mode() -> None:
    aid = rand_id("agt_")
    valid = {
        "valid": True,
        "allowed": True,
        "agent": {"id": aid, "name": "Bot", "issuer": "apexwealth.example", "active_scopes": ["read:x"]},
        "trust_level": "registered",
        "verified_at": "now",
    }
    r, bodies = online_receiver(lambda req: httpx.Response(200, json=valid))
    key = PrivateKey.generate()
    agent = r.authenticate("POST", "/pay", None, auth_headers(DPoPAuth("tok", key), BASE + "/pay", "POST"))
    assert agent.agent_id == aid and agent.revocation_checked and agent.proof == "dpop" and agent.scopes == ("read:x",)
    assert bodies[0]["proof"]["htu"] == BASE + "/pay" and bodies[0]["proof"]["htm"] == "POST"
    refusal = {"valid": False, "allowed": False, "error": {"code": "TOKEN_REVOKED", "message": "revoked"}}
    r, _ = online_receiver(lambda req: httpx.Response(200, json=refusal))
    assert refused(lambda: r.authenticate("GET", "/", None, [("authorization", "Bearer t")])).code == "TOKEN_REVOKED"
    for status in (401, 500):
        r, _ = online_receiver(functools.partial(error_answer, status))
        e = refused(functools.partial(bearer, r, "t"))
        assert (e.status, e.code) == (503, "REGISTRY_UNAVAILABLE")
    r, _ = online_receiver(lambda req: httpx.Response(422, json={"error": {"code": "INVALID_REQUEST", "message": "m"}}))
    e = refused(lambda: r.authenticate("GET", "/", None, [("authorization", "Bearer t")]))
    assert (e.status, e.code) == (401, "INVALID_REQUEST")


def test_async_receiver_and_asgi_middleware() -> None:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from bonafide.asgi import BonafideMiddleware
    from bonafide.fastapi import verified_agent

    app = FastAPI()
    config = ReceiverConfig.offline(REGISTRY, jwks=JWKS, public_base_url="http://testserver")
    app.add_middleware(BonafideMiddleware, config=config, exclude_paths=["/health"])

    @app.get("/hello")
    def hello(agent: Any = Depends(verified_agent)) -> dict[str, str]:  # noqa: B008
        return {"agent": agent.agent_id, "proof": str(agent.proof)}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"ok": "yes"}

    key = PrivateKey.generate()
    t = token(cnf={"jkt": key.kid})
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        r = c.get("/hello")
        assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_MISSING" and "www-authenticate" in r.headers
        r = c.get("/hello", auth=DPoPAuth(t, key))
        assert r.status_code == 200 and r.json()["proof"] == "dpop", r.text
        r = c.get("/hello", headers={"authorization": f"Bearer {t}"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "PROOF_REQUIRED"

    async def direct() -> None:
        ar = AsyncReceiver(ReceiverConfig.offline(REGISTRY, jwks=JWKS))
        agent = await ar.authenticate("GET", "/", None, [("authorization", f"Bearer {token()}")])
        assert agent.name == "PortfolioBot"
        await ar.aclose()

    asyncio.run(direct())


def test_wsgi_middleware_with_flask() -> None:
    from flask import Flask

    from bonafide.flask import current_agent
    from bonafide.wsgi import BonafideWSGIMiddleware

    app = Flask(__name__)
    config = ReceiverConfig.offline(REGISTRY, jwks=JWKS, public_base_url="http://localhost")
    app.wsgi_app = BonafideWSGIMiddleware(app.wsgi_app, config=config)  # type: ignore[method-assign]

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"agent": current_agent().agent_id}

    key = PrivateKey.generate()
    t = token(cnf={"jkt": key.kid})
    c = app.test_client()
    r = c.get("/hello")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "TOKEN_MISSING"
    headers = dict(auth_headers(DPoPAuth(t, key), "http://localhost/hello"))
    r = c.get("/hello", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    r = c.get("/hello", headers=headers)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "REPLAY"


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        Receiver(ReceiverConfig.offline("http://registry.example"))  # plain http off loopback
    with pytest.raises(ValueError):
        Receiver(ReceiverConfig.offline(REGISTRY, public_base_url="https://api.example/?x"))
    Receiver(ReceiverConfig.offline("http://127.0.0.1:9"))
