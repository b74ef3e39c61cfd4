#!/usr/bin/env python3
"""Fills in `sha256` for every accepted case of expected.json, from its `canonical`.

Independent of the Rust code: the digest is hashlib's SHA-256 of the UTF-8 bytes of
the hand-written canonical text. It also checks that each canonical text is itself
in RFC 8785 form for what these requests hold (strings only: members sorted, no
whitespace, only the escapes JCS uses), by re-encoding it with Python's json module.

Run in this directory: python3 make_digests.py
"""

import hashlib
import json

with open("expected.json", encoding="utf-8") as f:
    cases = json.load(f)

for name, case in cases.items():
    if "canonical" not in case:
        continue
    text = case["canonical"]
    again = json.dumps(
        json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert again == text, f"{name}: not canonical: {text} vs {again}"
    case["sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()

with open("expected.json", "w", encoding="utf-8") as f:
    f.write(json.dumps(cases, indent=2, ensure_ascii=False) + "\n")
