"""Strict JSON for untrusted segments (RFC 8725 §3.2, RFC 7515 §5.2): duplicate member
names refused at any depth, nesting bounded, no NaN/Infinity, no lone surrogates, UTF-8
only. The same refusals as the Rust core's `json` module."""

from __future__ import annotations

import json
from typing import Any

DEFAULT_MAX_DEPTH = 16


class JsonError(ValueError):
    """Malformed JSON, a duplicate member, or nesting too deep."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise JsonError(f"duplicate member `{k[:64]}`")
            seen.add(k)
    return d


def _constant(name: str) -> Any:
    raise JsonError("malformed JSON")


def _has_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if any("\ud800" <= c <= "\udfff" for c in v):
                return True
        elif isinstance(v, dict):
            for k, item in v.items():
                stack.append(k)
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)
    return False


def depth(value: Any) -> int:
    """Levels of array/object nesting (a scalar is 0, `{}` is 1)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            d += 1
            stack.extend((item, d) for item in v.values())
        elif isinstance(v, list):
            d += 1
            stack.extend((item, d) for item in v)
        if d > deepest:
            deepest = d
    return deepest


def loads(data: bytes | str, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parses one strict JSON document."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JsonError("malformed JSON") from e
    else:
        text = data
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except JsonError:
        raise
    except RecursionError as e:
        raise JsonError(f"JSON nested deeper than {max_depth} levels") from e
    except ValueError as e:
        raise JsonError("malformed JSON") from e
    if "\\u" in text and ("\\ud" in text.lower()) and _has_surrogate(value):
        raise JsonError("malformed JSON")
    # Nesting cannot exceed the number of brackets: most documents skip the walk.
    if text.count("{") + text.count("[") > max_depth and depth(value) > max_depth:
        raise JsonError(f"JSON nested deeper than {max_depth} levels")
    return value
