"""Starting ``pirtune-serve`` as a real process on a free localhost port."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pirtune.webapp.serve import launch

Serve = Callable[..., tuple[subprocess.Popen, str]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(db, port=None, options=()) → (process, base URL)``; every server is SIGKILLed
    at the end."""
    servers: list[subprocess.Popen] = []

    def _serve(db: Path, port: int | None = None,
               options: tuple[str, ...] | list[str] = ()) -> tuple[subprocess.Popen, str]:
        server, base = launch(db, port, options)
        servers.append(server)
        return server, base

    yield _serve
    for server in servers:
        if server.poll() is None:
            server.send_signal(signal.SIGKILL)
            server.wait()
