"""HL-Gauss training targets for the binned estimator (Farebrother et al. 2024).

Instead of the one-hot bin of the observed PIR p = k/n, the target is a
Gaussian N(p, σ²) integrated over each bin and renormalised on [0, 1], with σ
the binomial standard error sqrt(p(1 − p)/n): an image seen a few times (the
web app's picks) gets a soft target, one seen 1000 times nearly a one-hot
one. σ never falls below 0.75 bin widths, the ratio Farebrother et al.
recommend, so p = 0 or 1 (σ = 0) still spreads a little.
"""

from __future__ import annotations

import torch

from pirtune.errors import UsageError

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
