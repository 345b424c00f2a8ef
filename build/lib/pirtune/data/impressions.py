"""Binomial click noise: what a finite number of impressions makes of a true PIR.

The paper shows each of 1000 images 1000 times and draws the clicks from a
binomial with the simulated ("true") PIR as the success probability (2.2,
C.4). ``simulate_clicks`` is that draw; ``positives / impressions`` is then
the observed PIR an estimator learns from.
"""

from __future__ import annotations

import torch

from pirtune.errors import UsageError

PAPER_IMPRESSIONS = 1000  # per image (2.2)


def simulate_clicks(
    true_pir: torch.Tensor,
    impressions: int | torch.Tensor = PAPER_IMPRESSIONS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draws clicks ~ Binomial(impressions, true PIR) for each image.

    Args:
        true_pir: probability of a click per impression, float [N]; values are
            clamped into [0, 1] so that round-off just outside the range is harmless.
        impressions: how often each image is shown, one count for all or int [N];
            every count must be at least 1.
        generator: random source, for reproducible draws.

    Returns:
        Clicks, int64 [N], each between 0 and its image's impressions.

    Raises:
        UsageError: on a count below 1 or not a whole number, a length
            mismatch, or a NaN PIR.
    """
    pir = torch.as_tensor(true_pir).detach()
    if pir.ndim != 1:
        raise UsageError(f"true_pir has shape {tuple(pir.shape)}; pass one PIR per image, [N]")
    if torch.isnan(pir).any():
        rows = torch.nonzero(torch.isnan(pir)).flatten()[:5].tolist()
        raise UsageError(f"true_pir is NaN at indices {rows}; fix the objective that produced it")
    if isinstance(impressions, torch.Tensor):
        counts = impressions.detach().to(pir.device)
        if counts.shape != pir.shape:
            raise UsageError(
                f"impressions has shape {tuple(counts.shape)} but true_pir has "
                f"{tuple(pir.shape)}; pass one count per image or a single int"
            )
        if counts.is_floating_point() and not torch.equal(counts, counts.round()):
            raise UsageError("impressions must be whole numbers; round or cast them to int")
        if counts.numel() and int(counts.min()) < 1:
            bad = int(torch.argmin(counts))
            raise UsageError(
                f"impressions[{bad}]={int(counts[bad])} is below 1; every image must be "
                "shown at least once"
            )
        counts = counts.to(torch.float64)
    else:
        if isinstance(impressions, bool) or int(impressions) != impressions or impressions < 1:
            raise UsageError(
                f"impressions={impressions!r} must be a whole number of at least 1 "
                f"(the paper uses {PAPER_IMPRESSIONS})"
            )
        counts = torch.full(pir.shape, float(impressions), dtype=torch.float64, device=pir.device)
    # float64: float32 counts are exact only up to 2**24 impressions.
    prob = pir.to(torch.float64).clamp(0.0, 1.0)
    return torch.binomial(counts, prob, generator=generator).to(torch.int64)
