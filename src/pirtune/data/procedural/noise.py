"""Seeded value noise: 2-D (plain and fractal), 1-D fractal, and midpoint-displacement ridges."""

from __future__ import annotations

import numpy as np

from pirtune.data.procedural.canvas import _F, _u

_NOISE_SIZE = 32


def _lattice(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns lower/upper lattice indices and smoothed weights for 1-D coordinates t."""
    t = t.ravel()
    i0 = np.floor(t)
    f = t - i0
    i0 = i0.astype(np.intp) % _NOISE_SIZE
    return i0, (i0 + 1) % _NOISE_SIZE, f * f * (3.0 - 2.0 * f)


def _value_noise(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Returns smooth 2-D value noise in [0, 1] at broadcastable coordinates (u, v)."""
    size = _NOISE_SIZE
    table = rng.random((size, size), dtype=_F)
    if u.ndim == 2 and v.ndim == 2 and u.shape[0] == 1 and v.shape[1] == 1:
        # Axis-aligned coordinates make interpolation separable: blend lattice rows
        # first, then columns, instead of four full-image 2-D gathers. (Not a matmul:
        # multi-threaded BLAS on tiny matrices stalls badly on a busy machine.)
        r0, r1, fv = _lattice(v)
        rows = table[r0] + (table[r1] - table[r0]) * fv[:, None]
        c0, c1, fu = _lattice(u)
        left = rows.take(c0, axis=1)
        return left + (rows.take(c1, axis=1) - left) * fu
    # A wrapped border lets the +1 neighbours be read without a modulo per pixel.
    padded = np.empty((size + 1, size + 1), dtype=_F)
    padded[:size, :size] = table
    padded[size, :size] = table[0]
    padded[:, size] = padded[:, 0]
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = u - u0, v - v0
    fu = fu * fu * (3.0 - 2.0 * fu)
    fv = fv * fv * (3.0 - 2.0 * fv)
    idx = (v0.astype(np.intp) % size) * (size + 1) + u0.astype(np.intp) % size
    flat = padded.ravel()
    a, b = flat.take(idx), flat.take(idx + 1)
    c, d = flat.take(idx + size + 1), flat.take(idx + size + 2)
    top = a + (b - a) * fu
    bottom = c + (d - c) * fu
    return top + (bottom - top) * fv


def _fbm(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, octaves: int, gain: float = 0.5
) -> np.ndarray:
    """Returns fractal (summed-octave) value noise in [0, 1]."""
    total = np.zeros(np.broadcast_shapes(np.shape(u), np.shape(v)), dtype=_F)
    amp, norm, freq = 1.0, 0.0, 1.0
    for _ in range(octaves):
        total += amp * _value_noise(rng, u * freq, v * freq)
        norm += amp
        amp *= gain
        freq *= 2.0
    return total / norm


def _noise1d(rng: np.random.Generator, x: np.ndarray, freq: float, octaves: int) -> np.ndarray:
    """Returns smooth 1-D fractal noise in roughly [-1, 1] along ``x`` in [0, 1]."""
    total = np.zeros_like(x)
    amp, norm = 1.0, 0.0
    for _ in range(octaves):
        n = int(np.ceil(freq)) + 3
        knots = rng.uniform(-1.0, 1.0, n).astype(_F)
        t = x * freq + _u(rng, 0.0, 1.0)
        i = np.floor(t).astype(np.intp)
        f = t - i
        f = f * f * (3.0 - 2.0 * f)
        total += amp * (knots[i] + (knots[i + 1] - knots[i]) * f)
        norm += amp
        amp *= 0.5
        freq *= 2.0
    return total / norm


def _midpoint_ridge(rng: np.random.Generator, x: np.ndarray, roughness: float) -> np.ndarray:
    """Returns a midpoint-displacement ridge profile along ``x``, scaled to max |h| = 1."""
    # A fixed 129-knot profile makes the ridge's character independent of resolution.
    size = 129
    h = np.zeros(size, dtype=_F)
    h[[0, -1]] = rng.normal(0.0, 1.0, 2)
    step, scale = size - 1, 1.0
    while step > 1:
        half = step // 2
        mids = 0.5 * (h[:-1:step] + h[step::step])
        h[half::step] = mids + rng.normal(0.0, scale, mids.size)
        scale *= roughness
        step = half
    h -= h.mean()
    h /= np.abs(h).max() + 1e-6
    return np.interp(x, np.linspace(0.0, 1.0, size), h).astype(_F)
