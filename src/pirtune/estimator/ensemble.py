"""Beyond the paper's single estimator: soft bin targets, bootstrap members, a cautious reward.

* ``hl_gauss_targets``: HL-Gauss (Farebrother et al. 2024) for the binned
  estimator. Instead of the one-hot bin of the observed PIR p = k/n, the
  target is a Gaussian N(p, σ²) integrated over each bin and renormalised on
  [0, 1], with σ the binomial standard error sqrt(p(1 − p)/n): an image seen
  a few times (the web app's picks) gets a soft target, one seen 1000 times
  nearly a one-hot one. σ never falls below 0.75 bin widths, the ratio
  Farebrother et al. recommend, so p = 0 or 1 (σ = 0) still spreads a little.
* ``bootstrap_indices``: the resample each ensemble member learns from.
* ``FrozenPIREnsemble``: K frozen estimators; its forward is their mean, so
  it is used wherever one estimator is; ``members`` gives all K estimates.
* ``conservative_reward``: the members' mean − λ·SD (Coste et al. 2024), a
  lower confidence bound that rewards only what the members agree on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pirtune.errors import UsageError
from pirtune.estimator.module import USE_TEMPERATURE, FrozenPIREstimator, to_unit_float
from pirtune.estimator.network import expected_pir

SIGMA_FLOOR_BINS = 0.75  # Farebrother et al. 2024: σ / bin width = 0.75


def hl_gauss_sigma(observed: torch.Tensor, impressions: torch.Tensor, bins: int) -> torch.Tensor:
    """Each image's σ [N]: its binomial standard error, at least 0.75 bin widths."""
    p = observed.to(torch.float64)
    se = torch.sqrt(p * (1 - p) / impressions.to(torch.float64))
    return se.clamp(min=SIGMA_FLOOR_BINS / bins)


def hl_gauss_targets(observed: torch.Tensor, impressions: torch.Tensor,
                     bins: int) -> torch.Tensor:
    """Soft targets [N, bins] (rows sum to 1): N(p, σ²) over each bin, truncated to [0, 1].

    Args:
        observed: observed PIRs p [N] in [0, 1].
        impressions: times each image was shown, n [N] (at least 1).
        bins: equal bins on [0, 1].
    """
    if bool((impressions < 1).any()):
        raise UsageError("impressions must be at least 1 for every image; drop unseen images")
    p = observed.to(torch.float64)[:, None]                                  # [N, 1]
    sigma = hl_gauss_sigma(observed, impressions, bins)[:, None]             # [N, 1]
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64, device=p.device)
    cdf = torch.special.ndtr((edges[None, :] - p) / sigma)                   # [N, bins + 1]
    mass = cdf[:, 1:] - cdf[:, :-1]                                          # [N, bins]
    return (mass / mass.sum(1, keepdim=True)).to(torch.float32)


def bootstrap_indices(n: int, seed: int) -> torch.Tensor:
    """n indices drawn with replacement from [0, n), by a generator seeded with ``seed``."""
    if n < 1:
        raise UsageError(f"cannot resample {n} images; the estimator needs at least one")
    return torch.randint(n, (n,), generator=torch.Generator().manual_seed(seed))


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
