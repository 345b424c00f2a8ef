"""Simulated users (PIR paper, appendix C.4): modules mapping images in [0, 1] to true PIRs.

Every objective is an ``nn.Module``, built from its config's ``_target_``,
whose ``forward`` takes float [B, 3, H, W] images in [0, 1] and returns float
[B] PIRs in [0, 1], with a ``name`` (e.g. "color_red_blue", "vgg_pool2_f17",
"vgg_fc7_k20_s0"), a static ``name_of(**arguments)`` giving that name without
building it, and a ``describe()`` dict of its parameters.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from pirtune.errors import UsageError
from pirtune.objectives.colour import ColourObjective
from pirtune.objectives.vgg import (
    VGGFeatureBank,
    VGGObjective,
    load_vgg16,
    pir_from_bank,
    sample_filters,
    score_all,
)

__all__ = [
    "objective_name",
    "score",
    "ColourObjective",
    "VGGFeatureBank",
    "VGGObjective",
    "build_objective",
    "load_vgg16",
    "pir_from_bank",
    "sample_filters",
    "score_all",
]

# The objectives pirtune ships; a config may name any class with the same interface.
SHIPPED = ("pirtune.objectives.ColourObjective", "pirtune.objectives.VGGObjective")


def _objective_class(spec: Mapping[str, Any]) -> type[nn.Module]:
    """The class ``spec["_target_"]`` names: an nn.Module with ``name_of`` and ``describe``."""
    target = spec.get("_target_")
    module, _, name = str(target).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except (ImportError, ValueError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)
            and hasattr(cls, "name_of") and hasattr(cls, "describe")):
        raise UsageError(f"objective._target_ {target!r} is not an objective class (an "
                         "nn.Module with name_of and describe); e.g. one of: "
                         f"{', '.join(SHIPPED)}")
    return cls


def _arguments(spec: Mapping[str, Any]) -> dict[str, Any]:
    # Null keys take the class's defaults, so the defaults live in one place.
    return {key: value for key, value in spec.items()
            if key != "_target_" and value is not None}


def build_objective(spec: Mapping[str, Any]) -> nn.Module:
    """Build the objective a config's ``_target_`` names, with its other keys as arguments.

    Args:
        spec: ``_target_`` ``pirtune.objectives.ColourObjective`` with ``colours``
            (list of "red"/"green"/"blue"), or ``pirtune.objectives.VGGObjective``
            with ``layer`` and optionally ``filter``, ``k``, ``seed``, ``weights``
            and ``input_size`` (see each class). Keys the class does not take
            are ignored.

    Raises:
        UsageError: the target is no objective, or an argument is missing or bad.
    """
    cls = _objective_class(spec)
    # Keys the class does not take are left alone: an objective's config group
    # may carry settings of other objective kinds (a sweep over kinds sets them all).
    accepted = inspect.signature(cls).parameters
    try:
        return cls(**{k: v for k, v in _arguments(spec).items() if k in accepted})
    except TypeError as err:
        raise UsageError(f"objective {spec.get('_target_')}: {err}; see its docstring for "
                         "the arguments") from err


def objective_name(spec: Mapping[str, Any]) -> str:
    """The name ``build_objective(spec)`` will have, without building it (no VGG16 load).

    Run directories are named after it.
    """
    try:
        return _objective_class(spec).name_of(**_arguments(spec))
    except TypeError as err:
        raise UsageError(f"objective {spec.get('_target_')}: {err}") from err


def score(objective: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
          batch_size: int) -> torch.Tensor:
    """The objective's true PIR [N] of images [N, 3, R, R] in [0, 1], in batches."""
    with torch.no_grad():
        return torch.cat([objective(images[i:i + batch_size]).float().cpu()
                          for i in range(0, len(images), batch_size)])
