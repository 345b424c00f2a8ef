"""Starting ``pirtune-serve`` as a real process on a free localhost port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

Serve = Callable[..., tuple[subprocess.Popen, str]]


def free_port() -> int:
    """A localhost port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int) -> subprocess.Popen:
    """``pirtune-serve`` (the installed console script) on ``port``, once it answers."""
    command = Path(sys.executable).parent / "pirtune-serve"
    server = subprocess.Popen([str(command), "--port", str(port), "--db", str(db)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            if server.poll() is not None:
                break
            time.sleep(0.1)
    server.kill()
    raise AssertionError(server.stderr.read().decode()[-2000:])


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(db, port=None) → (process, base URL)``; every server is SIGKILLed at the end."""
    servers: list[subprocess.Popen] = []

    def _serve(db: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
        port = port or free_port()
        servers.append(start_server(db, port))
        return servers[-1], f"http://127.0.0.1:{port}"

    yield _serve
    for server in servers:
        if server.poll() is None:
            server.send_signal(signal.SIGKILL)
            server.wait()
