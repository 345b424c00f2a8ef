"""Importing pirtune has no process-wide side effects."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, warnings
# The libraries first: what they do on import is theirs.
for library in ("numpy", "scipy.stats", "statsmodels.api", "matplotlib.pyplot", "PIL.Image",
                "torch", "torchvision", "torchmetrics", "lightning", "lightning.pytorch",
                "hydra", "omegaconf", "wandb", "fastapi", "uvicorn", "rich"):
    importlib.import_module(library)
before = list(warnings.filters)
import pirtune
names = [m.name for m in pkgutil.walk_packages(pirtune.__path__, "pirtune.")]
for name in names:
    importlib.import_module(name)
assert "pirtune.stages.tune" in names and "pirtune.train" in names, names
changed = [f for f in warnings.filters if f not in before]
assert not changed, changed
print(len(names))
"""


def test_importing_every_module_leaves_the_warning_filters_alone():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.strip()) > 30
