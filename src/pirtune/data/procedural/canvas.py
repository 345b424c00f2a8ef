"""What every painter shares: float32 colours, the pixel grid, compositing, random draws."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

_F = np.float32


def _rgb(r: float, g: float, b: float) -> np.ndarray:
    """Returns an RGB triple as a float32 array."""
    return np.array((r, g, b), dtype=_F)


def _c(colour: np.ndarray) -> np.ndarray:
    """Returns an RGB triple shaped [3, 1, 1] to broadcast over an image."""
    return colour.reshape(3, 1, 1)


def _pick(rng: np.random.Generator, options: Sequence, weights: Sequence[float] | None = None):
    """Returns one of ``options``, optionally weighted."""
    if weights is None:
        return options[int(rng.integers(len(options)))]
    p = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    """Returns ``colour`` with Gaussian noise per channel, clipped to [0, 1]."""
    return np.clip(colour + rng.normal(0.0, amount, 3), 0.0, 1.0).astype(_F)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Returns a uniform float in [lo, hi)."""
    return float(rng.uniform(lo, hi))


def _smoothstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    """Returns the cubic Hermite step from 0 at ``e0`` to 1 at ``e1``."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _over(img: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> None:
    """Composites ``colour`` ([3,1,1] or [3,H,W]) over ``img`` in place with ``alpha``."""
    img += (colour - img) * alpha


def _edge(y: np.ndarray, boundary: np.ndarray, res: int) -> np.ndarray:
    """Returns coverage of pixels below ``boundary``, anti-aliased over one pixel."""
    # A one-pixel ramp keeps ridgelines and the horizon crisp yet alias-free at any size.
    return np.clip((y - boundary) * res + 0.5, 0.0, 1.0)


@functools.lru_cache(maxsize=8)
def _grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns read-only pixel-centre coordinates y [H, 1] and x [1, W] in (0, 1)."""
    c = (np.arange(res, dtype=_F) + 0.5) / res
    y, x = c[:, None].copy(), c[None, :].copy()
    y.flags.writeable = False
    x.flags.writeable = False
    return y, x
