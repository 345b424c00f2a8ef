"""Control objectives: what tuning towards an objective should not also raise (issue 16).

A gain in an objective's PIR can be specific (the tuned images have more of
what the objective asks for) or not (a global colour cast raises both halves
of a split). Evaluating a control objective beside the target separates the
two: the *specific gain* is the target's gain minus the control's.

* A colour split is mirrored: left green, right red (``color_green_red``)
  gets right green, left red (``color_red_green``) as its control, which a
  global cast raises just as much. A single colour has no split to mirror and
  so no control (its mirror is itself).
* A VGG objective with one filter gets a random other filter of the same
  layer (seeded by its own filter); one with k sampled filters gets the k
  filters of the first later seed that share none with its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from pirtune.objectives.colour import ColourObjective
from pirtune.objectives.vgg import LAYER_SIZES, VGGObjective, sample_filters

CONTROL_SEED = 7919    # a prime apart from the filter seeds configs use
MAX_SEED_TRIES = 1000  # k filters disjoint from the target's: none found means no control


def _target(spec: Mapping[str, Any]) -> str:
    return str(spec.get("_target_", "")).rpartition(".")[2]


def control_spec(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The control objective's config for an objective's config, or ``None`` when it has none.

    Args:
        spec: an objective config (``_target_`` and arguments), as ``build_objective`` takes.
    """
    name = _target(spec)
    if name == ColourObjective.__name__:
        colours = spec["colours"]
        colours = [colours] if isinstance(colours, str) else list(colours)
        mirrored = colours[::-1]
        return None if mirrored == colours else {**spec, "colours": mirrored}
    if name == VGGObjective.__name__:
        layer = spec["layer"]
        k = int(spec.get("k") or 1)
        if spec.get("filter") is not None:
            targets = [int(spec["filter"])]
        else:
            targets = sample_filters(LAYER_SIZES[layer], k, int(spec.get("seed") or 0))
        if k == 1:
            others = [f for f in range(LAYER_SIZES[layer]) if f not in targets]
            rng = torch.Generator().manual_seed(CONTROL_SEED + targets[0])
            other = others[int(torch.randint(len(others), (1,), generator=rng))]
            return {**spec, "filter": other, "k": 1}
        # k sampled filters: the first seed after the objective's whose k filters avoid its own.
        seed = int(spec.get("seed") or 0)
        for candidate in range(seed + 1, seed + 1 + MAX_SEED_TRIES):
            if not set(sample_filters(LAYER_SIZES[layer], k, candidate)) & set(targets):
                return {**spec, "filter": None, "k": k, "seed": candidate}
    return None
