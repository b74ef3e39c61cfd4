"""The README's twenty-line receiver runs: its code block is executed, and the app it
builds refuses a request without a token with the middleware's answer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_receiver_runs() -> None:
    block = re.search(r"## A receiver in twenty lines \(FastAPI\)\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert block is not None, "the README lost its receiver"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 20
    scope: dict[str, Any] = {"__name__": "readme_receiver"}
    exec(compile(code, str(README), "exec"), scope)
    with TestClient(scope["app"]) as client:
        r = client.get("/hello")
    assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_MISSING"
