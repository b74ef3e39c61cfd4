#!/usr/bin/env python3
"""Derives the negative (`fail_`) vectors from the published ones in this directory.

Each fail_ case is a published compact JWS with exactly one character of one segment
changed, so the signature must no longer verify. The published vectors themselves
(the files without the `fail_` prefix) are copied verbatim from the RFCs and are not
written by this script. Run from this directory: `python3 derive_fail_cases.py`.
"""
import base64
import json


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def derive(base, segment, index, new_char, change):
    with open(base, encoding="utf-8") as f:
        v = json.load(f)
    segs = v["jws"].split(".")
    old = segs[segment][index]
    assert old != new_char, (base, old)
    segs[segment] = segs[segment][:index] + new_char + segs[segment][index + 1 :]
    out = {
        "source": v["source"],
        "derived_from": base,
        "change": change,
        "jwk": v["jwk"],
        "alg": v["alg"],
        "jws": ".".join(segs),
    }
    # Keep the payload text only where the changed payload is still UTF-8.
    try:
        out["payload"] = b64d(segs[1]).decode("utf-8")
    except UnicodeDecodeError:
        pass
    return out


CASES = {
    "fail_rfc8037_a4_payload_changed.json": (
        "rfc8037_a4_ed25519.json", 1, 1, "n",
        'payload segment, character 2: X -> n ("Example" becomes "Fxample")',
    ),
    "fail_rfc8037_a4_signature_changed.json": (
        "rfc8037_a4_ed25519.json", 2, 0, "i",
        "signature segment, character 1: h -> i (R altered)",
    ),
    "fail_rfc8037_a4_header_changed.json": (
        "rfc8037_a4_ed25519.json", 0, 2, "i",
        "header segment, character 3: h -> i",
    ),
    "fail_rfc7515_a2_rs256_payload_changed.json": (
        "rfc7515_a2_rs256.json", 1, 3, "q",
        'payload segment, character 4: p -> q ("iss" becomes "jss")',
    ),
    "fail_rfc7515_a3_es256_payload_changed.json": (
        "rfc7515_a3_es256.json", 1, 3, "q",
        'payload segment, character 4: p -> q ("iss" becomes "jss")',
    ),
    "fail_rfc7515_a3_es256_signature_changed.json": (
        "rfc7515_a3_es256.json", 2, 0, "E",
        "signature segment, character 1: D -> E (r altered)",
    ),
    "fail_rfc7520_4_1_rs256_payload_changed.json": (
        "rfc7520_4_1_rs256.json", 1, 0, "T",
        'payload segment, character 1: S -> T ("It" becomes "Mt")',
    ),
}


def wrong_key(base, key_from, change):
    """The published JWS of `base`, unchanged, checked with the key of `key_from`."""
    with open(base, encoding="utf-8") as f:
        v = json.load(f)
    with open(key_from, encoding="utf-8") as f:
        k = json.load(f)
    assert v["alg"] == k["alg"]
    return {
        "source": v["source"],
        "derived_from": base,
        "key_from": key_from,
        "change": change,
        "jwk": k["jwk"],
        "alg": v["alg"],
        "jws": v["jws"],
        "payload": v["payload"],
    }


WRONG_KEY = {
    "fail_rfc7520_4_1_rs256_wrong_key.json": (
        "rfc7520_4_1_rs256.json", "rfc7515_a2_rs256.json",
        "JWS unchanged, verified with the RFC 7515 A.2 RSA key instead of RFC 7520's",
    ),
}


def write(name, value):
    with open(name, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print("wrote", name)


if __name__ == "__main__":
    for name, (base, segment, index, new_char, change) in CASES.items():
        write(name, derive(base, segment, index, new_char, change))
    for name, (base, key_from, change) in WRONG_KEY.items():
        write(name, wrong_key(base, key_from, change))
