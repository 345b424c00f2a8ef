"""``pirtune-serve``: the four-choice API on uvicorn, logging to SQLite.

    pirtune-serve --port 8000 --db runs/webapp/interactions.db
    pirtune-serve --checkpoint runs/<run>/tuned.pt   # a tuned generator, served back
    pirtune-serve --prior runs/<run>/estimator.pt    # start from what earlier people picked

Every session records the SHA-256 of the ``--checkpoint`` bundle that served
it, so one log can hold sessions of several generators (``pirtune-export``).
With ``--prior``, the choice model ``pirtune-train data=interactions`` fitted
on earlier sessions of the same generator, every new search starts from what
those people picked (``pirtune.webapp.prior``), and each session records the
prior's SHA-256 and file name; a prior file that is missing, damaged, or of
another generator is refused at start-up in one line.

Binds 127.0.0.1 unless ``--host`` says otherwise (``--help`` lists every
option). The page names the classes as the bundle's training data did: the
procedural scenes' "coast" and "mountain", or an image folder's sub-folder
names. Clients are told apart by their address, so behind a reverse proxy
every person counts as the proxy for the limits on new sessions, unless
``--behind-proxy`` says the proxy's ``X-Forwarded-For`` is to be believed (only
from the proxy's own address, 127.0.0.1 unless ``FORWARDED_ALLOW_IPS`` names
it); without the flag no header a client sends changes its address. ``launch``
starts it as a process on a free port, for tests and benchmarks.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import torch
import uvicorn

from pirtune.data.procedural import CLASSES
from pirtune.errors import UsageError
from pirtune.models.bundle import load_sampler
from pirtune.paths import SHIPPED_GENERATOR, runs_root
from pirtune.webapp.app import Limits, create_app
from pirtune.webapp.export import bundle_sha256
from pirtune.webapp.prior import load_prior
from pirtune.webapp.store import InteractionLog


def class_names(meta: dict, num_classes: int) -> list[str]:
    """The generator's class names, read from its bundle's data settings."""
    root = (meta.get("provenance") or {}).get("data", {}).get("root", "absent")
    if root is None and len(CLASSES) == num_classes:
        return list(CLASSES)
    if root not in (None, "absent") and Path(root).is_dir():
        folders = sorted(p.name for p in Path(root).iterdir() if p.is_dir())  # ImageFolder's order
        if len(folders) == num_classes:
            return folders
    return [f"class {c}" for c in range(num_classes)]


PORT_ATTEMPTS = 3   # launch's tries when the free port it picked was taken meanwhile


def free_port() -> int:
    """A localhost port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(db: Path, port: int | None = None, options: Sequence[str] = (),
           timeout: float = 300.0) -> tuple[subprocess.Popen, str]:
    """Start ``pirtune-serve`` (``python -m pirtune.webapp.serve``, this interpreter) as a
    process, with this process's environment.

    Returns the process and its base URL once ``/api/info`` answers (it loads
    the generator and runs the GANSpace PCA first). ``options`` are further
    command-line options, e.g. ``["--threads", "1"]``.

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout``
            seconds; the message ends with what it printed on stderr.
    """
    attempt = 0
    while True:
        attempt += 1
        chosen = port or free_port()
        base = f"http://127.0.0.1:{chosen}"
        # A file, not a pipe, for stderr: it never fills up and blocks the server.
        with tempfile.TemporaryFile() as errors:
            server = subprocess.Popen(
                [sys.executable, "-m", "pirtune.webapp.serve", "--port", str(chosen), "--db",
                 str(db), *options],
                stdout=subprocess.DEVNULL, stderr=errors)
            deadline = time.monotonic() + timeout
            try:
                while time.monotonic() < deadline and server.poll() is None:
                    try:
                        with urllib.request.urlopen(f"{base}/api/info", timeout=1):
                            return server, base
                    except OSError:   # not listening yet
                        time.sleep(0.1)
            except BaseException:   # interrupted (Ctrl-C) while waiting: leave no server behind
                server.kill()
                server.wait()
                raise
            server.kill()
            server.wait()
            errors.seek(0)
            printed = errors.read().decode(errors="replace")
        # Another process may take a free port between free_port() and the server's bind.
        if port is None and "address already in use" in printed and attempt < PORT_ATTEMPTS:
            continue
        raise RuntimeError(f"pirtune-serve did not come up on {base}: {printed[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    """Console script ``pirtune-serve``."""
    defaults = Limits()
    parser = argparse.ArgumentParser(
        prog="pirtune-serve",
        description="Serve the four-choice web app (the page at /, the API under /api) "
                    "with a generator, logging every session to SQLite.",
        epilog="example: pirtune-serve --port 8000 --db runs/webapp/interactions.db",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 for every network)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--checkpoint", type=Path,
                        default=SHIPPED_GENERATOR,
                        help="the generator bundle (pirtune-train's generator.pt, or a "
                             "tuned.pt to serve a tuned generator)")
    parser.add_argument("--db", type=Path, default=runs_root() / "webapp" / "interactions.db",
                        help="the SQLite interaction log (created if absent)")
    parser.add_argument("--prior", type=Path, default=None,
                        help="start every new search from what earlier people picked: the "
                             "choice model (estimator.pt) pirtune-train data=interactions "
                             "fitted on sessions of this --checkpoint")
    parser.add_argument("--behind-proxy", action="store_true",
                        help="take client addresses from the reverse proxy's X-Forwarded-For "
                             "(uvicorn's forwarded_allow_ips: 127.0.0.1, or the "
                             "FORWARDED_ALLOW_IPS environment variable)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per request (1: requests render in parallel)")
    parser.add_argument("--live-sessions", type=int, default=defaults.live_sessions,
                        help="searches kept in memory; older ones rebuild from the log")
    parser.add_argument("--sessions-per-client", type=int,
                        default=defaults.sessions_per_client,
                        help="new sessions one client address may start per minute")
    parser.add_argument("--sessions-total", type=int, default=defaults.sessions_total,
                        help="new sessions all clients together may start per minute")
    args = parser.parse_args(argv)
    try:
        for option in ("threads", "live_sessions", "sessions_per_client", "sessions_total"):
            if getattr(args, option) < 1:
                raise UsageError(f"--{option.replace('_', '-')} {getattr(args, option)} "
                                 "must be at least 1")
        generator, meta = load_sampler(args.checkpoint)
        generator.eval()
        checksum = bundle_sha256(args.checkpoint)
        prior = None if args.prior is None else load_prior(args.prior, generator, checksum)
    except UsageError as err:
        print(f"pirtune-serve: error: {err}", file=sys.stderr)
        sys.exit(2)
    limits = Limits(live_sessions=args.live_sessions,
                    sessions_per_client=args.sessions_per_client,
                    sessions_total=args.sessions_total)
    app = create_app(generator, InteractionLog(args.db), class_names(meta, generator.num_classes),
                     limits, generator_sha256=checksum, prior=prior)
    torch.set_num_threads(args.threads)   # after the start-up PCA, which uses every core
    head = "" if prior is None else f"; new searches start from what {args.prior} learnt"
    print(f"pirtune-serve: http://{args.host}:{args.port}/ (log: {args.db}{head})", flush=True)
    # The limits tell clients apart by their address: by a header only behind a proxy
    # (uvicorn would otherwise take X-Forwarded-For from any local client).
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                proxy_headers=args.behind_proxy)


if __name__ == "__main__":
    main()
