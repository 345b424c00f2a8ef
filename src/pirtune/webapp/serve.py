"""``pirtune-serve``: the four-choice API on uvicorn, logging to SQLite.

    pirtune-serve --port 8000 --db runs/webapp/interactions.db

Binds 127.0.0.1 unless ``--host`` says otherwise; ``--checkpoint`` picks the
generator bundle (the shipped CPU generator by default).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn

from pirtune.errors import UsageError
from pirtune.models.acgan import load_bundle
from pirtune.webapp.app import create_app
from pirtune.webapp.store import InteractionLog


def main(argv: list[str] | None = None) -> None:
    """Console script ``pirtune-serve``."""
    from pirtune.train import REPO_ROOT

    parser = argparse.ArgumentParser(prog="pirtune-serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--checkpoint", type=Path,
                        default=REPO_ROOT / "checkpoints" / "acgan-cpu.pt")
    parser.add_argument("--db", type=Path, default=REPO_ROOT / "runs" / "webapp" /
                        "interactions.db")
    args = parser.parse_args(argv)
    try:
        generator, _, _ = load_bundle(args.checkpoint)
    except UsageError as err:
        print(f"pirtune-serve: error: {err}", file=sys.stderr)
        sys.exit(2)
    generator.eval()
    uvicorn.run(create_app(generator, InteractionLog(args.db)), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
