"""The real registry (the binary in BONAFIDE_BIN, on 127.0.0.1 port 0 with a temp data
dir) and example receivers built with this SDK, served on loopback for the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))


@dataclass
class Registry:
    url: str
    admin_key: str
    proc: subprocess.Popen[bytes]

    def call(self, method: str, path: str, key: str, **kw: Any) -> Any:
        r = httpx.request(method, self.url + path, headers={"authorization": f"Bearer {key}"}, timeout=10, **kw)
        assert r.status_code < 300, f"{method} {path}: HTTP {r.status_code} {r.text}"
        return r.json()


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    binary = os.environ.get("BONAFIDE_BIN")
    if not binary:
        pytest.fail("BONAFIDE_BIN is not set: the integration tests need the registry binary (`bonafide`)")
    if not (Path(binary).is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"BONAFIDE_BIN={binary} is not an executable file")
    with tempfile.TemporaryDirectory(prefix="bonafide-sdk-py-") as tmp:
        data = Path(tmp) / "data"
        err_path = Path(tmp) / "stderr.log"
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [
                    binary,
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--data-dir",
                    str(data),
                    "--status-list-ttl",
                    "1s",
                    "--log-format",
                    "text",
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            url = None
            deadline = time.monotonic() + 60
            while url is None and time.monotonic() < deadline:
                if proc.poll() is not None:
                    pytest.fail(f"the registry exited with {proc.returncode}: {err_path.read_text()[-2000:]}")
                for line in err_path.read_text(errors="replace").splitlines():
                    if line.startswith("bonafide listening on "):
                        url = line.split("bonafide listening on ", 1)[1].strip()
                time.sleep(0.05)
            if url is None:
                pytest.fail(f"the registry did not say where it listens within 60 s: {err_path.read_text()[-2000:]}")
            admin_key = (data / "admin.key").read_text().strip()
            yield Registry(url, admin_key, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _Lazy:
    """A WSGI app set after its server has bound its port (the public URL needs it)."""

    app: Callable[..., Any] | None = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@dataclass
class Served:
    url: str
    stop: Callable[[], None]


def serve_wsgi(make: Callable[[str], Any]) -> Served:
    from werkzeug.serving import make_server

    lazy = _Lazy()
    server = make_server("127.0.0.1", 0, lazy, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    lazy.app = make(url)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()

    def stop() -> None:
        server.shutdown()
        t.join(10)

    return Served(url, stop)


def serve_asgi(make: Callable[[str], Any]) -> Served:
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(make(url), log_level="warning", lifespan="off"))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"

    def stop() -> None:
        server.should_exit = True
        t.join(10)
        sock.close()

    return Served(url, stop)
