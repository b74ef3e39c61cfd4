"""Every conformance vector of the repository (`conformance/`, found from this file),
run against this SDK. A file, or a member of a file or case, that this test does not
know fails it: a new vector can never be skipped silently."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from bonafide import dpop, httpsig, receipt, token
from bonafide._io import run_sync
from bonafide.delegation import RevokedSet
from bonafide.errors import TokenError
from bonafide.keys import PrivateKey, PublicKey, jwks_keys
from bonafide.policy import Policy, Resource, money_from_json, parse_instant
from bonafide.receiver import ReplayCache
from bonafide.status import StatusError, StatusListConfig, StatusListError, StatusLists, verify_list_token

ROOT = Path(__file__).resolve().parents[3] / "conformance"


def _only(what: str, found: dict[str, Any], known: set[str]) -> None:
    unknown = set(found) - known
    assert not unknown, f"{what}: members this SDK's conformance test does not know: {sorted(unknown)}"


def run_tokens(doc: dict[str, Any], case: dict[str, Any]) -> None:
    _only(
        "tokens.json",
        doc,
        {
            "cases",
            "description",
            "issuer",
            "jwks",
            "leeway_secs",
            "max_lifetime_secs",
            "now",
            "max_json_depth",
            "max_token_bytes",
        },
    )
    _only(case["name"], case, {"audience", "expect", "name", "rule", "token"})
    keys = token.KeySet.from_jwks(doc["jwks"])
    opts = token.VerifyOptions(
        issuers=(doc["issuer"],),
        audience=(case["audience"],) if case["audience"] is not None else None,
        leeway_secs=doc["leeway_secs"],
        max_lifetime_secs=doc["max_lifetime_secs"],
        max_token_bytes=doc.get("max_token_bytes", token.DEFAULT_MAX_TOKEN_BYTES),
        max_json_depth=doc.get("max_json_depth", 16),
    )
    expect = case["expect"]
    if expect["valid"]:
        _only(case["name"] + ".expect", expect, {"valid", "sub", "scopes"})
        claims = token.verify(case["token"], keys, opts, doc["now"])
        assert claims["sub"] == expect["sub"]
        assert claims["agent"]["scopes"] == expect["scopes"]
    else:
        _only(case["name"] + ".expect", expect, {"valid", "code"})
        with pytest.raises(TokenError) as e:
            token.verify(case["token"], keys, opts, doc["now"])
        assert e.value.code == expect["code"], e.value.message


def run_dpop(doc: dict[str, Any], case: dict[str, Any]) -> None:
    _only(
        "dpop.json",
        doc,
        # `issuer` and `jwks` verify `access_token` for a receiver-level run (the Rust
        # layer's); here the proof is checked against it, as the core checks it.
        {
            "access_token",
            "agent_jwk",
            "cases",
            "description",
            "issuer",
            "jkt",
            "jwks",
            "leeway_secs",
            "max_age_secs",
            "now",
        },
    )
    _only(case["name"], case, {"expect", "htm", "htu", "name", "proof"})
    kw: dict[str, Any] = dict(
        htm=case["htm"],
        htu=case["htu"],
        jkt=doc["jkt"],
        access_token=doc["access_token"],
        now=doc["now"],
        max_age=doc["max_age_secs"],
        leeway=doc["leeway_secs"],
    )
    expect = case["expect"]
    if expect["valid"]:
        _only(case["name"] + ".expect", expect, {"valid"})
        v = dpop.verify(case["proof"], **kw)
        assert v.jkt == doc["jkt"]
        assert v.replay_until == v.iat + doc["max_age_secs"]
        # The same proof with the bound key already parsed (the receiver's cache).
        key = dpop.proof_key(case["proof"])
        assert key is not None and key.kid == doc["jkt"]
        assert dpop.verify(case["proof"], known_key=key, **kw) == v
    else:
        _only(case["name"] + ".expect", expect, {"valid", "code", "why"})
        with pytest.raises(TokenError) as e:
            dpop.verify(case["proof"], **kw)
        assert e.value.code == expect["code"], e.value.message
    if "agent_jwk" in doc and case["name"] == "valid":
        # A proof this SDK signs with the vectors' agent key verifies the same way.
        signer = PrivateKey.from_ed25519_seed(_b64(doc["agent_jwk"]["d"]))
        assert signer.kid == doc["jkt"]
        mine = dpop.sign(signer, htm=case["htm"], htu=case["htu"], access_token=doc["access_token"], iat=doc["now"])
        dpop.verify(mine, **kw)


def _b64(text: str) -> bytes:
    from bonafide._b64 import b64url_decode

    return b64url_decode(text)


def run_httpsig(doc: dict[str, Any], case: dict[str, Any]) -> None:
    _only(
        "httpsig.json",
        doc,
        {
            "access_token",
            "agent_jwk",
            "cases",
            "description",
            "issuer",
            "jwks",
            "keys",
            "leeway_secs",
            "max_age_secs",
            "now",
            "require_expires",
            "require_nonce",
            "required_components",
            "required_tag",
        },
    )
    _only(case["name"], case, {"expect", "name", "request"})
    keys = {kid: PublicKey.from_jwk(jwk) for kid, jwk in doc["keys"].items()}
    req = case["request"]
    _only(case["name"] + ".request", req, {"headers", "method", "url"})
    headers = [(h[0], h[1]) for h in req["headers"]]
    kw: dict[str, Any] = dict(
        method=req["method"],
        url=req["url"],
        headers=headers,
        key_for=keys.get,
        now=doc["now"],
        leeway=doc["leeway_secs"],
        max_age=doc["max_age_secs"],
        required_tag=doc["required_tag"],
        required_components=doc["required_components"],
        require_expires=doc["require_expires"],
        require_nonce=doc["require_nonce"],
    )
    expect = case["expect"]
    if expect["valid"]:
        _only(
            case["name"] + ".expect",
            expect,
            {"valid", "covered", "created", "expires", "keyid", "label", "nonce", "replay_until", "signature_base"},
        )
        v = httpsig.verify(**kw)
        got = dict(
            covered=list(v.covered),
            created=v.created,
            expires=v.expires,
            keyid=v.keyid,
            label=v.label,
            nonce=v.nonce,
            replay_until=v.replay_until,
        )
        assert got == {k: expect[k] for k in got}
        base = httpsig.signature_base(method=req["method"], url=req["url"], headers=headers, label=v.label)
        assert base == expect["signature_base"]
    else:
        _only(case["name"] + ".expect", expect, {"valid", "code", "why"})
        with pytest.raises(TokenError) as e:
            httpsig.verify(**kw)
        assert e.value.code == expect["code"], e.value.message


def run_policy(doc: dict[str, Any], case: dict[str, Any]) -> None:
    _only("policy file", doc, {"cases", "description", "policy"})
    _only(case["name"], case, {"allowed", "name", "now", "reasons", "remaining", "request", "spend_key", "spent"})
    policy = Policy.from_value(doc["policy"])
    req = case["request"]
    _only(case["name"] + ".request", req, {"action", "resource", "amount", "currency"})
    resource = Resource(req["resource"]["type"], req["resource"]["id"]) if "resource" in req else None
    assert ("amount" in req) == ("currency" in req), "amount and currency go together"
    money = money_from_json(req["amount"], req["currency"]) if "amount" in req else None
    d = policy.evaluate(
        action=req["action"],
        resource=resource,
        money=money,
        now=parse_instant(case["now"]),
        spent_in_period=Decimal(case.get("spent", "0")),
    )
    assert d.allowed == case["allowed"], d.message
    assert d.codes == case["reasons"], d.message
    assert d.allowed == (not d.reasons)
    if "remaining" in case:
        assert (d.remaining.to_json() if d.remaining else None) == case["remaining"]
    if "spend_key" in case:
        assert (d.spend.period.key if d.spend else None) == case["spend_key"]
    if d.spend is not None:
        assert d.allowed and money is not None and d.spend.amount == money.amount


def _status_doc(doc: dict[str, Any]) -> None:
    _only(
        "status_lists.json",
        doc,
        {"cases", "description", "issuer", "jwks", "leeway_secs", "lists", "now", "status_list_jwks"},
    )


def run_status_list(doc: dict[str, Any], item: dict[str, Any]) -> None:
    """One Status List Token as served: verified and decoded, or refused."""
    _status_doc(doc)
    _only(item["name"], item, {"expect", "name", "token", "uri"})
    keys = jwks_keys(doc["status_list_jwks"])
    expect = item["expect"]
    uri = item["uri"]  # the URI it was served at
    if expect["valid"]:
        _only(item["name"] + ".expect", expect, {"valid", "bits", "len", "statuses"})
        _, lst = verify_list_token(item["token"], keys, uri, doc["now"], doc["leeway_secs"])
        assert (lst.bits, len(lst)) == (expect["bits"], expect["len"])
        names = {0: "valid", 1: "revoked", 2: "suspended"}
        assert [names.get(lst.get(i), lst.get(i)) for i in range(len(lst))] == expect["statuses"]
    else:
        _only(item["name"] + ".expect", expect, {"valid", "why"})
        with pytest.raises(StatusListError):
            verify_list_token(item["token"], keys, uri, doc["now"], doc["leeway_secs"])


def run_status_case(doc: dict[str, Any], case: dict[str, Any]) -> None:
    """A token checked by the receiver's status lists, the list served in-process at the
    token's URI (the SDK's own fetch, cache and verify path)."""
    _status_doc(doc)
    _only(case["name"], case, {"expect", "list", "name", "rule", "token"})
    lists = {item["name"]: item["token"] for item in doc["lists"]}
    issuer = doc["issuer"]

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/status-list-jwks.json":
            return httpx.Response(200, json=doc["status_list_jwks"])
        assert case["list"] is not None, "a token without `status` must not fetch anything"
        return httpx.Response(200, content=lists[case["list"]], headers={"content-type": "application/statuslist+jwt"})

    status = StatusLists(StatusListConfig.for_registry(issuer, leeway_s=doc["leeway_secs"]))
    client = httpx.Client(transport=httpx.MockTransport(serve))
    claims = token.verify(
        case["token"], token.KeySet.from_jwks(doc["jwks"]), token.VerifyOptions(issuers=(issuer,)), doc["now"]
    )
    expect = case["expect"]
    if expect["valid"]:
        _only(case["name"] + ".expect", expect, {"valid", "status"})
        check = run_sync(status.check(claims, doc["now"] * 1000), client)
        assert check.state == {"valid": "valid", "unchecked": "none"}[expect["status"]]
        assert check.revocation_checked == (expect["status"] == "valid")
    else:
        _only(case["name"] + ".expect", expect, {"valid", "code", "status"})
        with pytest.raises((TokenError, StatusError)) as e:
            run_sync(status.check(claims, doc["now"] * 1000), client)
        assert getattr(e.value, "code", None) == expect["code"], str(e.value)


def run_replays(doc: dict[str, Any], seq: dict[str, Any]) -> None:
    """Proofs presented in order to one fresh verifier: verified as in dpop.json and
    httpsig.json, then claimed in the receiver's replay cache."""
    _only(
        "replays.json",
        doc,
        {
            "access_token",
            "agent_jwk",
            "description",
            "issuer",
            "jkt",
            "jwks",
            "keys",
            "leeway_secs",
            "max_age_secs",
            "sequences",
        },
    )
    _only(seq["name"], seq, {"name", "rule", "steps"})
    cache = ReplayCache()
    keys = {kid: PublicKey.from_jwk(jwk) for kid, jwk in doc["keys"].items()}
    for i, step in enumerate(seq["steps"]):
        where = f"{seq['name']} step {i}"
        expect = step["expect"]
        _only(where + ".expect", expect, {"valid", "code", "why"})
        outcome: str | None
        try:
            if step["kind"] == "dpop":
                _only(where, step, {"expect", "htm", "htu", "kind", "now", "proof"})
                p = dpop.verify(
                    step["proof"],
                    htm=step["htm"],
                    htu=step["htu"],
                    jkt=doc["jkt"],
                    access_token=doc["access_token"],
                    now=step["now"],
                    max_age=doc["max_age_secs"],
                    leeway=doc["leeway_secs"],
                )
                outcome = cache.claim(1, p.jkt, p.jti, p.replay_until, step["now"])
            elif step["kind"] == "httpsig":
                _only(where, step, {"expect", "kind", "now", "request"})
                req = step["request"]
                v = httpsig.verify(
                    method=req["method"],
                    url=req["url"],
                    headers=[(h[0], h[1]) for h in req["headers"]],
                    key_for=keys.get,
                    now=step["now"],
                    leeway=doc["leeway_secs"],
                    max_age=doc["max_age_secs"],
                    require_nonce=True,
                )
                outcome = cache.claim(2, v.keyid, v.nonce or "", v.replay_until, step["now"])
            else:
                pytest.fail(f"{where}: a step kind this SDK's conformance test does not know: {step['kind']}")
        except TokenError as e:
            outcome = e.code
        assert outcome == (None if expect["valid"] else expect["code"]), where


def run_receipt(doc: dict[str, Any], case: dict[str, Any]) -> None:
    _only("receipts.json", doc, {"cases", "description", "jwks"})
    _only(case["name"], case, {"expect", "name", "receipt", "request"})
    keys = jwks_keys(doc["jwks"])
    expect = case["expect"]
    if expect["valid"]:
        _only(
            case["name"] + ".expect",
            expect,
            {"valid", "claims", "request_canonical", "request_sha256", "request_matches"},
        )
        claims = receipt.verify(case["receipt"], keys)
        assert claims == expect["claims"]
        if "request" in case:
            assert receipt.request_canonical(case["request"]) == expect["request_canonical"]
            assert receipt.request_sha256(case["request"]) == expect["request_sha256"]
            if expect["request_matches"]:
                receipt.check_request(claims, case["request"])
            else:
                with pytest.raises(receipt.ReceiptError):
                    receipt.check_request(claims, case["request"])
    else:
        _only(case["name"] + ".expect", expect, {"valid", "why"})
        with pytest.raises(receipt.ReceiptError):
            receipt.verify(case["receipt"], keys)


def _delegation_doc(doc: dict[str, Any]) -> None:
    _only(
        "delegation.json", doc, {"audience", "description", "exchanges", "issuer", "jwks", "max_depth", "now", "tokens"}
    )


def run_delegated_token(doc: dict[str, Any], case: dict[str, Any]) -> None:
    """A delegated token verified with the tokens.json rules, then checked against the
    revocations and suspensions a receiver knows (`RevokedSet`, as the receiver
    consults it)."""
    _delegation_doc(doc)
    _only(case["name"], case, {"expect", "name", "revoked_agents", "revoked_jtis", "rule", "suspended_agents", "token"})
    revoked = RevokedSet(set(case["revoked_jtis"]), set(case["revoked_agents"]), set(case["suspended_agents"]))
    opts = token.VerifyOptions(issuers=(doc["issuer"],), audience=(doc["audience"],))
    expect = case["expect"]

    def check() -> dict[str, Any]:
        claims = token.verify(case["token"], token.KeySet.from_jwks(doc["jwks"]), opts, doc["now"])
        refusal = revoked.refusal(claims)
        if refusal is not None:
            raise refusal
        return claims

    if expect["valid"]:
        _only(case["name"] + ".expect", expect, {"valid", "sub", "actor", "chain"})
        claims = check()
        chain = token.actors(claims)
        assert (claims["sub"], chain[-1], chain) == (expect["sub"], expect["actor"], expect["chain"])
    else:
        _only(case["name"] + ".expect", expect, {"valid", "code"})
        with pytest.raises(TokenError) as e:
            check()
        assert e.value.code == expect["code"], e.value.message


# Lists of vectors that are another party's rule, named here so they are known (never
# skipped silently) and reported as such: each item's members are still checked, so
# a list that changes shape fails this test.
REGISTRY_SIDE: dict[tuple[str, str], str] = {
    ("delegation.json", "exchanges"): (
        "registry-side: the child token POST /v1/token mints (RFC 8693 narrowing) is the "
        "registry's rule; an agent asks the registry (RegistryClient.exchange_token)"
    ),
}


def registry_side_exchange(doc: dict[str, Any], case: dict[str, Any]) -> None:
    """A token exchange the registry decides: the format is checked, the rule is not
    re-implemented here (see REGISTRY_SIDE)."""
    _delegation_doc(doc)
    _only(case["name"], case, {"actor", "expect", "issue", "name", "parent", "request", "rule"})
    _only(case["name"] + ".request", case["request"], {"audience", "cnf", "exp", "policy", "scopes"})
    _only(case["name"] + ".expect", case["expect"], {"valid", "claims", "code", "widened"})
    pytest.skip(REGISTRY_SIDE[("delegation.json", "exchanges")])


Runner = Callable[[dict[str, Any], dict[str, Any]], None]

# What to run in each file: its list-valued members, each item with its runner.
RUNNERS: dict[str, dict[str, Runner]] = {
    "tokens.json": {"cases": run_tokens},
    "dpop.json": {"cases": run_dpop},
    "httpsig.json": {"cases": run_httpsig},
    "status_lists.json": {"lists": run_status_list, "cases": run_status_case},
    "replays.json": {"sequences": run_replays},
    "receipts.json": {"cases": run_receipt},
    "delegation.json": {"tokens": run_delegated_token, "exchanges": registry_side_exchange},
}


def runners_for(rel: str) -> dict[str, Runner] | None:
    if rel.startswith("policies/") and rel.endswith(".json") and rel.count("/") == 1:
        return {"cases": run_policy}
    return RUNNERS.get(rel)


def collect() -> list[Any]:
    params: list[Any] = []
    files = sorted(p for p in ROOT.rglob("*") if p.is_file())
    assert files, f"no conformance vectors under {ROOT}"
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel == "README.md":
            continue
        runners = runners_for(rel)
        if runners is None:
            params.append(pytest.param(rel, "", None, None, id=f"{rel}::unknown-file"))
            continue
        doc = json.loads(path.read_text())
        # Lists of vectors: lists of objects that have a `name`.
        lists = sorted(
            k
            for k, v in doc.items()
            if isinstance(v, list) and v and all(isinstance(x, dict) and "name" in x for x in v)
        )
        for member in lists:
            if member not in runners:
                params.append(pytest.param(rel, member, doc, None, id=f"{rel}::{member}::unknown-member"))
                continue
            for item in doc[member]:
                params.append(pytest.param(rel, member, doc, item, id=f"{rel}::{member}::{item['name']}"))
        for member in runners:
            assert member in lists, f"conformance/{rel} has no `{member}`"
    return params


@pytest.mark.parametrize(("rel", "member", "doc", "item"), collect())
def test_vector(rel: str, member: str, doc: dict[str, Any] | None, item: dict[str, Any] | None) -> None:
    runners = runners_for(rel)
    if runners is None or doc is None:
        pytest.fail(
            f"conformance/{rel}: a vector file this SDK does not know; teach tests/test_conformance.py to run it"
        )
    if item is None or member not in runners:
        pytest.fail(f"conformance/{rel}: `{member}` is a list of vectors this SDK does not know")
    runners[member](doc, item)


def test_every_file_is_run() -> None:
    # The one README is the only file not run; everything else has a runner.
    names = {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if p.is_file()}
    assert "tokens.json" in names and "dpop.json" in names
    assert any(n.startswith("policies/") for n in names)
