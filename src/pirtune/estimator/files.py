"""The estimator file (``estimator.pt``): writing it, reading it, and what it holds.

One format, ``pirtune-estimator/1``, for the three kinds of frozen estimator:
a single network (``state_dict``), an ensemble (``members``), and the choice
model (``loss: choice`` with its ``reference`` utilities). ``load_estimator``
dispatches on those keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from pirtune.errors import UsageError
from pirtune.estimator.choice import ChoiceNetwork, FrozenChoiceModel
from pirtune.estimator.ensemble import FrozenPIREnsemble
from pirtune.estimator.frozen import FrozenPIREstimator
from pirtune.estimator.module import PIREstimatorModule
from pirtune.files import atomic_write

ESTIMATOR_FORMAT = "pirtune-estimator/1"


def save_estimator(module: PIREstimatorModule | list[PIREstimatorModule],
                   network_cfg: dict[str, Any], temperature: float, path: Path,
                   **extra: Any) -> Path:
    """Write the trained network(s), the config that builds them and their use temperature.

    A list of several modules is an ensemble: every member's weights go under
    ``members`` (``load_estimator`` then returns a ``FrozenPIREnsemble``).
    Written atomically (``pirtune.files``): a crash never leaves half a file.
    """
    modules = module if isinstance(module, list) else [module]
    weights = ({"state_dict": modules[0].network.state_dict()} if len(modules) == 1 else
               {"members": [m.network.state_dict() for m in modules]})
    with atomic_write(path) as f:
        torch.save({"format": ESTIMATOR_FORMAT, **weights, "network": network_cfg,
                    "temperature": temperature, **extra}, f)
    return path


def save_choice_model(frozen: FrozenChoiceModel, network_cfg: dict[str, Any], path: Path,
                      **extra: Any) -> Path:
    """Write the choice model: its network, the backbone's config and its reference set.

    ``load_estimator`` reads it back as a ``FrozenChoiceModel``. Written atomically.
    ``extra`` is kept beside them: the estimate stage's ``report``, and
    ``generators``, the SHA-256 of the generator bundles whose images people
    picked among (``pirtune.webapp.prior`` refuses a model of another generator).
    """
    with atomic_write(path) as f:
        torch.save({"format": ESTIMATOR_FORMAT, "loss": "choice",
                    "state_dict": frozen.network.state_dict(), "network": network_cfg,
                    "reference": frozen.reference.cpu(), "scale": frozen.scale,
                    "temperature": 1.0, **extra}, f)
    return path


def read_estimator_file(path: str | Path) -> dict[str, Any]:
    """The dict ``save_estimator`` (or ``save_choice_model``) wrote to ``path``, checked."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"estimator {path} does not exist; run stage=estimate first")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != ESTIMATOR_FORMAT:
        raise UsageError(f"{path} is not a pirtune estimator; give the estimator.pt that "
                         "stage=estimate writes")
    return saved


def load_estimator(path: str | Path) -> FrozenPIREstimator:
    """The frozen estimator saved by ``save_estimator``, at its saved temperature
    (a ``FrozenPIREnsemble`` when it holds several members), or the choice model
    ``save_choice_model`` saved (a ``FrozenChoiceModel``)."""
    return estimator_from_saved(read_estimator_file(path))


def estimator_from_saved(saved: dict[str, Any]) -> FrozenPIREstimator:
    """The frozen estimator of a saved dict (``read_estimator_file``; a bundle's selector
    keeps one whole)."""
    if saved.get("loss") == "choice":
        return load_choice_model(saved)
    if "members" in saved:
        networks = []
        for state in saved["members"]:
            networks.append(instantiate(saved["network"]))
            networks[-1].load_state_dict(state)
        return FrozenPIREnsemble(networks, saved["temperature"], config=saved["network"])
    network = instantiate(saved["network"])
    network.load_state_dict(saved["state_dict"])
    return FrozenPIREstimator(network, saved["temperature"], config=saved["network"])


def load_choice_model(saved: dict[str, Any]) -> FrozenChoiceModel:
    """The ``FrozenChoiceModel`` of a file ``save_choice_model`` wrote (already loaded)."""
    network = ChoiceNetwork.from_config(saved["network"])
    network.load_state_dict(saved["state_dict"])
    return FrozenChoiceModel(network, saved["reference"], config=saved["network"],
                             scale=float(saved.get("scale", 1.0)))   # 1.0: saved uncalibrated
