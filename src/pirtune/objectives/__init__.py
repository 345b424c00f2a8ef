"""Simulated users (PIR paper, appendix C.4): modules mapping images in [0, 1] to true PIRs.

Every objective is an ``nn.Module`` whose ``forward`` takes float
[B, 3, H, W] images in [0, 1] and returns float [B] PIRs in [0, 1], with a
``name`` (e.g. "color_red_blue", "vgg_pool2_f17", "vgg_fc7_k20_s0") and a
``describe()`` dict of its parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from pirtune.errors import UsageError
from pirtune.objectives.colour import ColourObjective, colour_name
from pirtune.objectives.vgg import (
    VGGFeatureBank,
    VGGObjective,
    load_vgg16,
    pir_from_bank,
    sample_filters,
    score_all,
    vgg_name,
)

__all__ = [
    "objective_name",
    "ColourObjective",
    "VGGFeatureBank",
    "VGGObjective",
    "build_objective",
    "load_vgg16",
    "pir_from_bank",
    "sample_filters",
    "score_all",
]

KINDS = ("colour", "vgg")


def build_objective(spec: Mapping[str, Any]) -> nn.Module:
    """Build an objective from a config mapping.

    Args:
        spec: ``kind`` "colour" with ``colours`` (list of "red"/"green"/"blue"),
            or ``kind`` "vgg" with ``layer`` and optionally ``filter``, ``k``,
            ``seed`` and ``weights`` (see ``VGGObjective``). Other keys are
            ignored, so the objective's config group may carry settings read
            elsewhere.

    Raises:
        UsageError: ``kind`` is unknown or a required key is missing.
    """
    kind = spec.get("kind")
    required = {"colour": ("colours",), "vgg": ("layer",)}.get(kind)
    if required is None:
        raise UsageError(f"objective.kind {kind!r} is unknown; choose one of: {', '.join(KINDS)}")
    for key in required:
        if spec.get(key) is None:
            raise UsageError(f"objective.kind={kind} needs objective.{key}; add it to the config")
    if kind == "colour":
        return ColourObjective(colours=spec["colours"])
    # Unset or null keys take VGGObjective's defaults, so the defaults live in one place.
    optional = {
        key: spec[key]
        for key in ("filter", "k", "seed", "weights", "input_size")
        if spec.get(key) is not None
    }
    return VGGObjective(layer=spec["layer"], **optional)


def objective_name(spec: Mapping[str, Any]) -> str:
    """The name ``build_objective(spec)`` will have, without building it (no VGG16 load).

    Run directories are named after it. Unset VGG keys take ``VGGObjective``'s
    defaults, read from its signature so they are written once.
    """
    kind = spec.get("kind")
    if kind == "colour":
        return colour_name(spec["colours"])
    if kind == "vgg":
        defaults = inspect.signature(VGGObjective).parameters
        k, seed = (spec.get(key) if spec.get(key) is not None else defaults[key].default
                   for key in ("k", "seed"))
        return vgg_name(spec["layer"], spec.get("filter"), k, seed)
    raise UsageError(f"objective.kind {kind!r} is unknown; choose one of: {', '.join(KINDS)}")
