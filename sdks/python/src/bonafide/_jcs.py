"""RFC 8785 JSON Canonicalization Scheme: members sorted by UTF-16 code units, numbers
as ECMAScript writes doubles, strings minimally escaped. `policy_hash` hashes this."""

from __future__ import annotations

import json
from typing import Any


def _es6_number(x: float) -> str:
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("NaN and +/-Infinity are not permitted in JSON")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    text = repr(abs(x))
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = 0.<digits> × 10^n
    n = len(whole.lstrip("0")) + exp if whole.strip("0") else exp - (len(frac) - len(frac.lstrip("0")))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        e_text = ("+" if e >= 0 else "-") + str(abs(e))
        out = digits + "e" + e_text if k == 1 else digits[0] + "." + digits[1:] + "e" + e_text
    return sign + out


def canonicalize(value: Any) -> str:
    """The RFC 8785 form of a JSON value (as parsed by `json`)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return _es6_number(float(value))
    if isinstance(value, float):
        return _es6_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonicalize(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonicalize(value[k]) for k in keys) + "}"
    raise ValueError(f"not a JSON value: {type(value).__name__}")
