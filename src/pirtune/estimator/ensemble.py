"""Beyond the paper's single estimator: an ensemble of them and a cautious reward.

* ``FrozenPIREnsemble``: K frozen estimators; its forward is their mean, so
  it is used wherever one estimator is; ``members`` gives all K estimates.
  Each member learns from its own bootstrap resample of the training split
  (``PIRDataModule(bootstrap=…)``).
* ``conservative_reward``: the members' mean − λ·SD (Coste et al. 2024), a
  lower confidence bound that rewards only what the members agree on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pirtune.errors import UsageError
from pirtune.estimator.frozen import USE_TEMPERATURE, FrozenPIREstimator, to_unit_float
from pirtune.estimator.network import expected_pir


def conservative_reward(members: torch.Tensor, lam: float) -> torch.Tensor:
    """The members' mean minus λ times their SD, per image: [K, B] → [B].

    The SD is the population SD of the K estimates (divisor K), so λ·SD is a
    spread the members actually show, not an inflated small-sample one.
    """
    if members.ndim != 2 or len(members) < 2:
        raise UsageError(f"a conservative reward needs estimates [K ≥ 2, B], not "
                         f"{tuple(members.shape)}; train estimator.members ≥ 2")
    return members.mean(0) - lam * members.std(0, correction=0)


class _Members(nn.ModuleList):
    """The members' networks, with the ``bins`` every estimator network has."""

    def __init__(self, networks: list[nn.Module]) -> None:
        super().__init__(networks)
        bins = {network.bins for network in networks}
        if len(bins) != 1:
            raise UsageError(f"ensemble members have different bins {sorted(bins)}; train "
                             "them with one estimator config")
        self.bins: int = bins.pop()


class FrozenPIREnsemble(FrozenPIREstimator):
    """K frozen estimators: ``forward`` is their mean estimate, ``members`` every one.

    Args:
        networks: the trained networks (images in [0, 1] → logits [B, bins]).
        temperature: softmax temperature of every member's estimate (paper: 0.01).
        config: the config that built the networks, when loaded from a file.
    """

    def __init__(self, networks: list[nn.Module], temperature: float = USE_TEMPERATURE,
                 config: dict[str, Any] | None = None) -> None:
        super().__init__(_Members(networks), temperature, config)

    def members(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] → every member's expected PIR [K, B]."""
        images = to_unit_float(images)
        return torch.stack([expected_pir(network(images), self.temperature)
                            for network in self.network])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] → the members' mean expected PIR [B]."""
        return self.members(images).mean(0)


def members_of(estimator: FrozenPIREstimator, images: torch.Tensor) -> torch.Tensor:
    """Every member's estimate [K, B]; a single estimator is an ensemble of one."""
    if isinstance(estimator, FrozenPIREnsemble):
        return estimator.members(images)
    return estimator(images)[None]
