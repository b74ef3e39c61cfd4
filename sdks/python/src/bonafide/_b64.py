"""Strict base64url without padding (RFC 7515 §2): one accepted encoding per byte string."""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_URLSAFE = re.compile(r"[A-Za-z0-9_-]*\Z")


class Base64Error(ValueError):
    """Not strict unpadded base64url."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decodes strict base64url: URL-safe alphabet only, no padding, no whitespace, and
    zero unused bits in the last character (so no two spellings decode alike)."""
    rem = len(text) % 4
    if rem == 1 or not _URLSAFE.match(text):
        raise Base64Error("invalid base64url")
    if rem:
        # The bits past the last whole byte must be zero (canonical form).
        last = _INDEX[text[-1]]
        if last & (0x0F if rem == 2 else 0x03):
            raise Base64Error("non-canonical base64url")
        text += "=" * (4 - rem)
    try:
        return base64.urlsafe_b64decode(text)
    except (binascii.Error, ValueError) as e:  # pragma: no cover - the checks above cover it
        raise Base64Error("invalid base64url") from e
