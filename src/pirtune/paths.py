"""Where pirtune finds what it ships and where it writes, installed or in a checkout.

The config tree, the shipped CPU generator and the landscape encoder are package data, found beside
this module. Everything a run writes goes under the *home*: ``PIRTUNE_HOME``
when set, else the current directory (so ``runs/`` and ``.cache/`` appear
where the command is run).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "conf"
SHIPPED_GENERATOR = PACKAGE_DIR / "checkpoints" / "acgan-cpu.pt"
SHIPPED_ENCODER = PACKAGE_DIR / "checkpoints" / "encoder-cpu.pt"


def home() -> Path:
    """``$PIRTUNE_HOME``, or the current directory: the parent of ``runs/`` and ``.cache/``."""
    return Path(os.environ.get("PIRTUNE_HOME") or Path.cwd()).resolve()


def runs_root() -> Path:
    """The folder run directories go in (``<home>/runs``)."""
    return home() / "runs"
