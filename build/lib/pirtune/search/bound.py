"""The information-theoretic limit of any four-choice search.

An answer picks one of four images, so it carries at most log₂4 = 2 bits.
Localising a target spread over a ball of radius R0 to a ball of radius R in
n dimensions takes n·log₂(R0/R) bits (the ratio of the balls' volumes), so no
search can need fewer than n·log₂(R0/R)/2 rounds on average.

For the benchmark's targets — start and target independent draws from the
latent prior N(0, I) — the target lies at distance √(2n) from the start on
average (its offset is N(0, 2I)), so R0 = √(2n); with R = 0.05·√n,
R0/R = √2/0.05 ≈ 28.3 and the bound is n·log₂(28.3)/2 ≈ 2.41·n rounds.
"""

from __future__ import annotations

import math


def rounds_lower_bound(n: int, r0: float, r: float, bits_per_answer: float = 2.0) -> float:
    """n·log₂(r0/r) / bits_per_answer: the fewest rounds any search needs."""
    if not r0 > r > 0:
        raise ValueError(f"need r0 > r > 0, got r0={r0}, r={r}")
    return n * math.log2(r0 / r) / bits_per_answer
