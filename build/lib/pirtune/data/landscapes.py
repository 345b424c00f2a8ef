"""Procedural coast and mountain landscapes: pirtune's embedded default dataset.

The paper this project follows trains its GAN on landscape photographs scraped from
the web. Those photos cannot be downloaded here, so this module paints a stand-in:
seeded, fully deterministic scenes of two classes, ``"coast"`` and ``"mountain"``,
rendered with vectorised numpy at any resolution of at least 16 pixels (designed to
read well at 32, 64 and 128).

What a scene contains:

* **Sky** – a vertical gradient for one of three times of day drawn with weights
  day 55 % (clear or, sometimes, overcast), dusk 27 % (purple/pink/orange), night 18 %
  (dark navy); a sun (day, dusk) or a full or crescent moon (night) that is sometimes
  absent, low enough to hide behind ridges, or set half below the horizon; stars on
  most nights; soft fractal-noise clouds tinted by the time of day.
* **Mountain** – two to four layered ridgelines (pointed peaks plus midpoint
  displacement detail), farther ones fading into the horizon colour (aerial
  perspective) with mist pooling in the valleys; faces lit or shaded by the sun's
  side, with spurs and couloirs fanning out from each summit; snow caps on whatever
  rises above a random snow line, reaching further down the couloirs; rock in grey,
  brown, blue-ish, basalt or reddish tones, often with green or autumn foothills in
  front.
* **Coast** – a flat sea horizon at a random height; sea colour mixed from a water
  tint and the sky it reflects, with perspective wave texture getting coarser toward
  the viewer and a shimmering column reflecting the sun or moon; a beach (light,
  golden, pale, dark volcanic sand or grey pebbles) under a random shoreline curve
  with wet sand and a foam line, sometimes rocks, and sometimes a low headland or
  island on the horizon.

Every image then gets a random exposure, white balance, saturation and contrast
grade, because the colour statistics across a training set should vary widely: the
paper finds the initial variability of the generator matters.

Speed: about 2.3 ms per 64×64 image on one CPU core of the development machine
(2.1 ms at 32×32, 3.9 ms at 128×128; best of three passes over 400 images, numpy
only, ``torch.set_num_threads(1)``), so the ~8000 images a datamodule renders at
start-up take about 20 s. The cost is mostly per-call numpy overhead, not pixels.

The command-line entry point ``pirtune-landscapes`` (:func:`main`) writes scenes to
disk as a torchvision ``ImageFolder`` tree.
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CLASSES",
    "MIN_RESOLUTION",
    "main",
    "render_batch",
    "render_landscape",
    "write_imagefolder",
]

CLASSES: tuple[str, ...] = ("coast", "mountain")
"""Class names in alphabetical order, matching torchvision ``ImageFolder`` indices."""

MIN_RESOLUTION = 16
"""Smallest side length that still shows a recognisable scene."""

_F = np.float32

_TIMES = ("day", "dusk", "night")
_TIME_WEIGHTS = (0.55, 0.27, 0.18)


# --------------------------------------------------------------------------- helpers


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


# ------------------------------------------------------------------------------- sky


@dataclass(frozen=True)
class _Light:
    """Illumination a painted sky imposes on the terrain below it."""

    time: str
    top: np.ndarray
    low: np.ndarray
    direct: np.ndarray
    ambient: np.ndarray
    haze: np.ndarray
    light_dir: float
    body: tuple[float, float, float, np.ndarray] | None


_DAY_TOPS = (_rgb(0.10, 0.30, 0.72), _rgb(0.20, 0.45, 0.85), _rgb(0.26, 0.52, 0.80))
_DAY_LOWS = (_rgb(0.70, 0.82, 0.95), _rgb(0.84, 0.88, 0.92), _rgb(0.58, 0.76, 0.93))
_DUSK_TOPS = (_rgb(0.12, 0.10, 0.35), _rgb(0.26, 0.15, 0.45), _rgb(0.10, 0.20, 0.45))
_DUSK_MIDS = (_rgb(0.78, 0.36, 0.55), _rgb(0.88, 0.46, 0.36), _rgb(0.55, 0.30, 0.62))
_DUSK_LOWS = (_rgb(1.00, 0.62, 0.30), _rgb(1.00, 0.78, 0.42), _rgb(0.96, 0.46, 0.34))
_NIGHT_TOPS = (_rgb(0.01, 0.02, 0.06), _rgb(0.02, 0.03, 0.11), _rgb(0.03, 0.02, 0.08))
_NIGHT_LOWS = (_rgb(0.10, 0.14, 0.29), _rgb(0.16, 0.15, 0.31), _rgb(0.07, 0.12, 0.22))


def _paint_sky(
    img: np.ndarray, rng: np.random.Generator, y: np.ndarray, x: np.ndarray, horizon: float
) -> _Light:
    """Paints gradient, stars, sun or moon and clouds over the whole image."""
    res = img.shape[1]
    time = _pick(rng, _TIMES, _TIME_WEIGHTS)
    overcast = time == "day" and rng.random() < 0.18
    if time == "day":
        top = _jitter(rng, _pick(rng, _DAY_TOPS), 0.04)
        low = _jitter(rng, _pick(rng, _DAY_LOWS), 0.03)
        if overcast:
            grey = _u(rng, 0.45, 0.75)
            top = 0.25 * top + 0.75 * _rgb(grey, grey + 0.02, grey + 0.06)
            low = 0.3 * low + 0.7 * _rgb(grey + 0.15, grey + 0.16, grey + 0.17)
        mid = 0.5 * (top + low)
    elif time == "dusk":
        top = _jitter(rng, _pick(rng, _DUSK_TOPS), 0.04)
        mid = _jitter(rng, _pick(rng, _DUSK_MIDS), 0.05)
        low = _jitter(rng, _pick(rng, _DUSK_LOWS), 0.04)
    else:
        top = _jitter(rng, _pick(rng, _NIGHT_TOPS), 0.01)
        low = _jitter(rng, _pick(rng, _NIGHT_LOWS), 0.02)
        mid = 0.6 * top + 0.4 * low

    # Two linear segments (top→mid→low) with a random knee give the dusk band its shape.
    t = np.clip(y / horizon, 0.0, 1.0) ** _u(rng, 0.7, 1.6)
    knee = _u(rng, 0.45, 0.75)
    t1 = np.clip(t / knee, 0.0, 1.0)
    t2 = np.clip((t - knee) / (1.0 - knee), 0.0, 1.0)
    column = _c(top) + _c(mid - top) * t1 + _c(low - mid) * t2
    img[:] = column

    if time == "night" and rng.random() < 0.75:
        n_stars = max(1, int(res * res * _u(rng, 0.004, 0.016)))
        sy = rng.integers(0, max(1, int(horizon * res)), n_stars)
        sx = rng.integers(0, res, n_stars)
        glow = rng.uniform(0.3, 1.0, n_stars).astype(_F) * (1.0 - sy / (horizon * res)) ** 0.5
        img[:, sy, sx] = np.maximum(img[:, sy, sx], glow * _c(_rgb(0.95, 0.95, 1.0))[:, :, 0])

    body = None
    present = {"day": 0.0 if overcast else 0.65, "dusk": 0.8, "night": 0.7}[time]
    if rng.random() < present:
        bx = _u(rng, 0.08, 0.92)
        if time == "dusk":
            # Low and large: it may sit half below the horizon or behind ridges.
            by, br = horizon - _u(rng, -0.02, 0.2), _u(rng, 0.045, 0.08)
            bcol = _rgb(1.0, _u(rng, 0.55, 0.85), _u(rng, 0.25, 0.5))
            glow_r, glow_k = _u(rng, 0.15, 0.3), _u(rng, 0.35, 0.6)
        elif time == "day":
            by, br = _u(rng, 0.08, max(0.1, horizon - 0.08)), _u(rng, 0.035, 0.06)
            bcol = _rgb(1.0, 0.98, 0.88)
            glow_r, glow_k = _u(rng, 0.08, 0.16), _u(rng, 0.35, 0.6)
        else:
            by, br = _u(rng, 0.08, max(0.1, horizon - 0.12)), _u(rng, 0.03, 0.05)
            bcol = _rgb(0.96, 0.95, 0.86)
            glow_r, glow_k = _u(rng, 0.05, 0.1), _u(rng, 0.12, 0.25)
        d = np.sqrt((x - bx) ** 2 + (y - by) ** 2)
        img += _c(bcol) * (glow_k * np.exp(-d / glow_r))
        disc = np.clip((br - d) * res + 0.5, 0.0, 1.0)
        if time == "night" and rng.random() < 0.5:
            # A crescent: mask the disc with an offset copy of itself.
            ox, oy = (float(v) for v in rng.normal(0.0, 1.0, 2))
            off = br * _u(rng, 0.5, 1.0) / max(float(np.hypot(ox, oy)), 1e-3)
            d2 = np.sqrt((x - bx - ox * off) ** 2 + (y - by - oy * off) ** 2)
            disc = disc * (1.0 - np.clip((br - d2) * res + 0.5, 0.0, 1.0))
        _over(img, _c(bcol), disc)
        body = (bx, by, br, bcol)

    cover_p = {"day": 0.75, "dusk": 0.8, "night": 0.5}[time]
    if overcast or rng.random() < cover_p:
        cover = _u(rng, 0.75, 1.0) if overcast else _u(rng, 0.05, 0.75)
        # Clouds are wider than tall, so the noise runs at a lower frequency in x.
        fx, fy = _u(rng, 1.5, 3.5), _u(rng, 4.0, 8.0)
        n = _fbm(rng, x * fx + _u(rng, 0, 32), y * fy + _u(rng, 0, 32), 3)
        thr = 0.72 - 0.37 * cover
        density = _smoothstep(thr, thr + _u(rng, 0.08, 0.2), n)
        density *= 0.35 + 0.65 * _smoothstep(horizon, 0.5 * horizon, y)
        shift = max(1, res // 32)
        above = np.empty_like(density)
        above[shift:] = density[:-shift]
        above[:shift] = 0.0
        # Tops lit, bellies shaded: light comes from above.
        shade = np.clip(0.6 + 1.2 * (density - above), 0.0, 1.0)
        if time == "day":
            lit, dark = _rgb(1.0, 1.0, 1.0), _rgb(0.66, 0.69, 0.76)
            if overcast:
                lit, dark = _rgb(0.86, 0.87, 0.89), _rgb(0.5, 0.52, 0.57)
        elif time == "dusk":
            lit = np.clip(0.5 * low + 0.5 * _rgb(1.0, 0.75, 0.65), 0, 1).astype(_F)
            dark = (0.6 * mid + 0.4 * top).astype(_F)
        else:
            lit, dark = _rgb(0.32, 0.34, 0.42), _rgb(0.07, 0.08, 0.13)
        colour = _c(dark) + _c(lit - dark) * shade
        _over(img, colour, density * _u(rng, 0.7, 0.95))

    if time == "day":
        direct = _rgb(1.0, 0.96, 0.88) * (_u(rng, 0.2, 0.35) if overcast else _u(rng, 0.7, 0.9))
        ambient = 0.35 * mid + (0.3 if overcast else 0.1)
    elif time == "dusk":
        direct = _rgb(1.0, _u(rng, 0.55, 0.7), _u(rng, 0.35, 0.5)) * _u(rng, 0.55, 0.8)
        ambient = 0.3 * mid + 0.08
    else:
        direct = _rgb(0.35, 0.4, 0.55) * (_u(rng, 0.5, 0.75) if body else _u(rng, 0.4, 0.55))
        ambient = 0.35 * low + 0.06
    light_dir = (1.0 if body[0] < 0.5 else -1.0) if body else float(rng.choice((-1.0, 1.0)))
    haze = (0.75 * low + 0.25 * mid).astype(_F)
    return _Light(time, top, low, direct.astype(_F), ambient.astype(_F), haze, light_dir, body)


# ------------------------------------------------------------------------- mountains

_ROCKS = (
    _rgb(0.46, 0.46, 0.49),  # grey granite
    _rgb(0.45, 0.36, 0.28),  # brown
    _rgb(0.32, 0.37, 0.50),  # blue-ish slate
    _rgb(0.26, 0.28, 0.31),  # dark basalt
    _rgb(0.55, 0.37, 0.29),  # red sandstone
)
_FOOTHILLS = (
    _rgb(0.22, 0.42, 0.16),  # meadow green
    _rgb(0.10, 0.26, 0.13),  # conifer forest
    _rgb(0.42, 0.43, 0.20),  # olive scrub
    _rgb(0.58, 0.36, 0.14),  # autumn
)


def _paint_mountains(
    img: np.ndarray,
    rng: np.random.Generator,
    y: np.ndarray,
    x: np.ndarray,
    light: _Light,
    horizon: float,
) -> None:
    """Paints two to four ridgelines from far to near over the sky."""
    res = img.shape[1]
    xs = x[0]
    n_layers = int(rng.integers(2, 5))
    rock = _pick(rng, _ROCKS)
    foothills = n_layers >= 3 and rng.random() < 0.65
    snow_alt = _u(rng, 0.2, 0.75)
    mist = _u(rng, 0.0, 0.6)
    for i in range(n_layers):
        depth = i / (n_layers - 1)
        nearest = i == n_layers - 1
        crest = _u(rng, 0.5, 0.95) * horizon * (1.0 - depth) + depth * _u(rng, 0.55, 0.72)
        crest = min(crest, 0.78)
        base = min(crest + _u(rng, 0.2, 0.32), 1.02) if not nearest else 1.02
        if nearest:
            base = max(base, crest + 0.2)
        is_foothill = nearest and foothills
        height = (base - crest) * (_u(rng, 0.45, 0.75) if is_foothill else 1.0)

        if is_foothill:
            rolling = _noise1d(rng, xs, _u(rng, 1.5, 3.0), 3) + _u(rng, -1.0, 1.0) * (xs - 0.5)
            rolling -= rolling.min()
            profile = 0.2 + 0.8 * rolling / (rolling.max() + 1e-6)
            ridge = (base - height * profile - 0.012 * _noise1d(rng, xs, 24.0, 2))[None, :]
            facing = np.tanh(3.0 * light.light_dir * np.gradient(height * profile, xs))[None, :]
            gully = _value_noise(rng, x * 12.0, y * 6.0) - 0.5
        else:
            k = int(rng.integers(2, 5))
            # Stratified summits with overlapping flanks: every column lies on a slope,
            # so the skyline is all peaks and V-shaped saddles with no flat shelves.
            spacing = 1.3 / k
            px = -0.15 + spacing * (np.arange(k) + rng.uniform(0.2, 0.8, k))
            pw = spacing * rng.uniform(0.7, 1.3, k)
            ph = rng.uniform(0.55, 1.0, k)
            ph[int(rng.integers(k))] = 1.0
            px, pw, ph = px.astype(_F), pw.astype(_F), ph.astype(_F)
            # Exponent > 1 makes flanks concave with pointed summits, like real peaks.
            sharp = _u(rng, 1.0, 1.7)
            bumps = np.clip(1.0 - np.abs(xs[None, :] - px[:, None]) / pw[:, None], 0.0, 1.0)
            lift = height * (0.15 + 0.85 * ph[:, None] * bumps**sharp)
            detail = height * _u(rng, 0.05, 0.12) * _midpoint_ridge(rng, xs, _u(rng, 0.5, 0.62))
            ridges = base - lift - detail
            ridge = ridges.min(axis=0)[None, :]
            # Each pixel belongs to the frontmost peak covering it, lower peaks standing in
            # front, so shading changes along the peaks' outlines rather than in columns.
            owner = np.zeros((res, res), dtype=np.intp)
            for j in np.argsort(-ph):
                owner[y > ridges[j][None, :]] = j
            cols = np.arange(res)[None, :]
            slopes = np.gradient(lift, xs, axis=1)
            facing = np.tanh(3.0 * light.light_dir * slopes[owner, cols])
            summit_x = px[owner]
            summit_y = (base - height * (0.15 + 0.85 * ph))[owner]
            # Streaks fanning out from each summit read as spurs and couloirs.
            fan = (x - summit_x) / np.maximum(y - summit_y, 0.1)
            gully = _value_noise(rng, fan * _u(rng, 2.0, 4.0), (y - summit_y) * 3.0) - 0.5
            # Far below a summit the fan turns into long rays, so let it fade out there.
            gully *= np.exp(-np.maximum(y - summit_y, 0.0) / (0.6 * height))
        ridge = ridge.astype(_F)
        lit = np.clip(0.5 + 0.4 * facing + 0.45 * gully, 0.05, 1.1)
        texture = 1.0 + 0.18 * (_value_noise(rng, x * 18.0, y * 22.0) - 0.5)

        if is_foothill:
            ground = _jitter(rng, _pick(rng, _FOOTHILLS), 0.03)
            texture = texture + 0.25 * (_value_noise(rng, x * 40.0, y * 40.0) - 0.5)
            lit = 0.7 + 0.3 * lit
        else:
            ground = _jitter(rng, rock if rng.random() < 0.7 else _pick(rng, _ROCKS), 0.03)
        shading = _c(light.ambient) + _c(light.direct) * lit
        colour = _c(ground) * shading * texture

        if not is_foothill and rng.random() < 0.8:
            # Caps hang below the skyline by how far it rises above the snow line, so
            # their lower edge follows the ridges instead of cutting a flat band.
            altitude = (base - ridge) / height
            above_line = np.clip(altitude - snow_alt + _u(rng, -0.1, 0.1), 0.0, 1.0)
            cap = height * _u(rng, 0.5, 1.3) * above_line
            # Reusing the gully streaks lets snow reach down the couloirs, as it does.
            below_ridge = y - ridge - 0.15 * gully
            snow = _smoothstep(cap + 0.015, cap - 0.015, below_ridge) * (cap > 0.0)
            snow_col = _c(_rgb(0.95, 0.96, 1.0)) * (
                _c(light.ambient) * 1.4 + _c(light.direct) * (0.35 + 0.65 * lit)
            )
            _over(colour, snow_col, snow)

        haze = _u(rng, 0.35, 0.7) * (1.0 - depth) + _u(rng, 0.0, 0.1) * depth
        # Mist pooling toward the foot of each layer separates the layers visually.
        foot = _smoothstep(0.0, 1.0, (y - ridge) / (base - crest + 1e-3))
        fog = mist * (1.0 - 0.6 * depth) * foot
        colour += (_c(light.haze) - colour) * (1.0 - (1.0 - haze) * (1.0 - fog))
        _over(img, colour, _edge(y, ridge, res))


# ----------------------------------------------------------------------------- coast

_SEAS = (
    _rgb(0.04, 0.18, 0.36),  # deep blue
    _rgb(0.04, 0.32, 0.38),  # teal
    _rgb(0.03, 0.10, 0.24),  # navy
    _rgb(0.10, 0.28, 0.28),  # grey-green
)
_SANDS = (
    _rgb(0.86, 0.78, 0.60),  # light sand
    _rgb(0.86, 0.68, 0.42),  # golden
    _rgb(0.93, 0.89, 0.79),  # pale coral sand
    _rgb(0.30, 0.28, 0.27),  # dark volcanic sand
    _rgb(0.55, 0.53, 0.50),  # grey pebbles
)
_SAND_WEIGHTS = (0.3, 0.25, 0.15, 0.15, 0.15)


def _paint_coast(
    img: np.ndarray,
    rng: np.random.Generator,
    y: np.ndarray,
    x: np.ndarray,
    light: _Light,
    horizon: float,
) -> None:
    """Paints headland, sea with reflections, and a beach over the sky."""
    res = img.shape[1]
    xs = x[0]

    if rng.random() < 0.5:
        px = _pick(rng, (_u(rng, -0.1, 0.05), _u(rng, 0.95, 1.1), _u(rng, 0.2, 0.8)))
        width = _u(rng, 0.15, 0.4)
        bump = np.clip(1.0 - np.abs(xs - px) / width, 0.0, 1.0) ** _u(rng, 0.5, 1.2)
        shape = _u(rng, 0.03, 0.1) * bump * (1.0 + 0.15 * _noise1d(rng, xs, 8.0, 2))
        land = _jitter(rng, _pick(rng, (_rgb(0.18, 0.3, 0.16), _rgb(0.3, 0.3, 0.3))), 0.03)
        land_col = land * (light.ambient + 0.7 * light.direct)
        land_col += (light.haze - land_col) * _u(rng, 0.3, 0.6)
        _over(img, _c(land_col), _edge(y, (horizon - shape)[None, :], res))

    # Distance in "world" units grows without bound toward the horizon line.
    d = np.clip((y - horizon) / (1.0 - horizon), 1e-3, 1.0)
    dist = 1.0 / d
    wave_u = (x - 0.5) * dist
    waves = _value_noise(rng, wave_u * _u(rng, 1.0, 2.0), dist * _u(rng, 4.0, 7.0))
    # Near the horizon the texture is sub-pixel, so fade it out there instead of aliasing.
    wave_amp = _u(rng, 0.15, 0.35) * np.sqrt(d)

    water = _jitter(rng, _pick(rng, _SEAS), 0.03)
    water_lit = water * (light.ambient * 2.0 + light.direct)
    reflect = _u(rng, 0.45, 0.75)
    # The sea's far edge must stay darker than the horizon sky, or there is no horizon.
    far = (water_lit + (light.low - water_lit) * reflect) * _u(rng, 0.65, 0.88)
    near = water_lit + (light.top - water_lit) * _u(rng, 0.05, 0.25)
    sea = _c(far) + _c(near - far) * np.sqrt(d)
    sea = sea * (1.0 + wave_amp * (waves - 0.5) * 2.0)

    if light.body is not None and light.body[1] < horizon + 0.01:
        bx, _, br, bcol = light.body
        width = br * (0.8 + 3.0 * d)
        column = np.exp(-(((x - bx) / width) ** 2))
        shimmer = _smoothstep(0.45, 0.75, _value_noise(rng, wave_u * 4.0, dist * 12.0))
        strength = _u(rng, 0.6, 1.0) * (0.3 if light.time == "night" else 1.0) ** 0.5
        sea = sea + _c(bcol) * (column * shimmer * strength * (1.0 - 0.5 * d))
        glow = np.exp(-(((x - bx) / 0.2) ** 2)) * np.exp(-3.0 * d)
        sea = sea + _c(bcol) * (0.25 * glow)
    _over(img, sea, _edge(y, np.float32(horizon), res))

    # Keep a band of open water between horizon and shore whatever the horizon height.
    shore_base = horizon + _u(rng, 0.35, 0.75) * (1.0 - horizon)
    tilt = _u(rng, -0.3, 0.3)
    shore = shore_base + tilt * (xs - 0.5) + 0.035 * _noise1d(rng, xs, _u(rng, 2.0, 4.0), 3)
    shore = np.maximum(shore, horizon + 0.1).astype(_F)[None, :]

    if rng.random() < 0.6:
        # A broken line of surf offshore, parallel to the beach.
        offset = _u(rng, 0.03, 0.08)
        surf_y = np.maximum(shore - offset, horizon + 0.02)
        surf = np.exp(-(((y - surf_y) / 0.008) ** 2)) * _smoothstep(
            0.45, 0.7, _value_noise(rng, x * 10.0, y * 3.0)
        )
        _over(img, _c(0.85 * (light.ambient + light.direct)), surf * 0.8)

    sand = _jitter(rng, _pick(rng, _SANDS, _SAND_WEIGHTS), 0.03)
    below = np.clip((y - shore) / (1.02 - shore), 0.0, 1.0)
    ripple = _value_noise(rng, x * 6.0, y * _u(rng, 20.0, 40.0)) - 0.5
    grain = _value_noise(rng, x * 48.0, y * 48.0) - 0.5
    beach_lit = 0.75 + 0.15 * ripple - 0.15 * below
    beach = _c(sand) * (_c(light.ambient) + _c(light.direct) * beach_lit) * (1.0 + 0.15 * grain)
    # Wet sand just above the waterline is darker and picks up the sky.
    wet = _smoothstep(_u(rng, 0.03, 0.07), 0.0, y - shore)
    beach = beach * (1.0 - 0.35 * wet) + _c(light.low) * (0.15 * wet)
    _over(img, beach, _edge(y, shore, res))

    foam_w = max(_u(rng, 0.008, 0.016), 0.6 / res)
    foam = np.exp(-(((y - shore - 0.3 * foam_w) / foam_w) ** 2))
    foam *= 0.55 + 0.45 * _value_noise(rng, x * 12.0, y * 4.0)
    _over(img, _c(0.92 * (light.ambient + light.direct)), np.clip(foam, 0.0, 1.0))

    if rng.random() < 0.35:
        rock = _jitter(rng, _rgb(0.24, 0.23, 0.22), 0.04)
        for _ in range(int(rng.integers(1, 5))):
            rx = _u(rng, 0.03, 0.1)
            ry = rx * _u(rng, 0.45, 0.8)
            cx = _u(rng, 0.0, 1.0)
            cy = float(shore[0, min(res - 1, int(cx * res))]) + _u(rng, -0.06, 0.12)
            r2 = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
            inside = np.clip((1.0 - r2) * rx * res * 0.5, 0.0, 1.0) * (y < cy + 0.3 * ry)
            lit = np.clip(0.3 + 0.7 * (cy - y) / ry + 0.3 * light.light_dir * (cx - x) / rx, 0, 1)
            rock_col = _c(rock) * (_c(light.ambient) + _c(light.direct) * lit)
            _over(img, rock_col, inside)


# ------------------------------------------------------------------------ public API


def _check(label: int, resolution: int) -> tuple[int, int]:
    """Validates a label and resolution, returning them as ints."""
    if label not in (0, 1) or isinstance(label, float):
        raise ValueError(
            f"label must be 0 ({CLASSES[0]!r}) or 1 ({CLASSES[1]!r}), got {label!r}; "
            "pass an index into CLASSES"
        )
    res = int(resolution)
    if res != resolution or res < MIN_RESOLUTION:
        raise ValueError(
            f"resolution must be an integer >= {MIN_RESOLUTION}, got {resolution!r}; "
            f"render at {MIN_RESOLUTION} or more and downsample if you need smaller images"
        )
    return int(label), res


def render_landscape(seed: int, label: int, resolution: int = 64) -> np.ndarray:
    """Renders one coast (label 0) or mountain (label 1) scene.

    Args:
        seed: Any non-negative integer; the scene is a pure function of
            ``(seed, label, resolution)`` and ignores global random state.
        label: Index into :data:`CLASSES`: 0 for coast, 1 for mountain.
        resolution: Side length in pixels, at least :data:`MIN_RESOLUTION`.

    Returns:
        A float32 array of shape [3, resolution, resolution] with values in [0, 1].

    Raises:
        ValueError: If ``seed`` is negative, ``label`` is not 0 or 1, or ``resolution``
            is below 16.
    """
    label, res = _check(label, resolution)
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed!r}; use seed % 2**32 or abs(seed)")
    rng = np.random.default_rng([int(seed), label, res])
    y, x = _grid(res)
    img = np.empty((3, res, res), dtype=_F)

    if label == 0:
        horizon = _u(rng, 0.35, 0.62)
        light = _paint_sky(img, rng, y, x, horizon)
        _paint_coast(img, rng, y, x, light, horizon)
    else:
        horizon = _u(rng, 0.5, 0.72)
        light = _paint_sky(img, rng, y, x, horizon)
        _paint_mountains(img, rng, y, x, light, horizon)

    # A per-image grade spreads brightness and colour casts across the data set.
    white_balance = (1.0 + rng.normal(0.0, 0.04, 3)).astype(_F)
    img *= np.exp(rng.normal(0.0, 0.15)) * _c(white_balance)
    luma = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    img = luma + (img - luma) * _u(rng, 0.75, 1.3)
    mean = float(luma.mean())
    img = mean + (img - mean) * _u(rng, 0.85, 1.15)
    np.clip(img, 0.0, 1.0, out=img)
    return img.astype(_F, copy=False)


def render_batch(seeds: Sequence[int], labels: Sequence[int], resolution: int = 64) -> torch.Tensor:
    """Renders one scene per (seed, label) pair into a batch.

    Args:
        seeds: Per-image seeds.
        labels: Per-image class indices, the same length as ``seeds``.
        resolution: Side length in pixels, at least :data:`MIN_RESOLUTION`.

    Returns:
        A float32 tensor of shape [N, 3, resolution, resolution] with values in [0, 1].

    Raises:
        ValueError: If the lengths differ, or a label or the resolution is invalid.
    """
    if len(seeds) != len(labels):
        raise ValueError(
            f"seeds and labels must have the same length, got {len(seeds)} and {len(labels)}; "
            "pass one label per seed"
        )
    _check(0, resolution)
    res = int(resolution)
    out = np.empty((len(seeds), 3, res, res), dtype=_F)
    for i, (seed, label) in enumerate(zip(seeds, labels, strict=True)):
        out[i] = render_landscape(seed, label, res)
    return torch.from_numpy(out)


def _image_seed(seed: int, index: int) -> int:
    """Derives image ``index``'s seed from the data-set ``seed``, stably across runs."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def write_imagefolder(
    root: str | os.PathLike, n: int, resolution: int = 64, seed: int = 0
) -> pathlib.Path:
    """Writes ``n`` scenes as a torchvision ``ImageFolder`` tree of PNG files.

    Image ``i`` has class ``i % 2`` (so the classes alternate and stay balanced) and
    is saved as ``<root>/<class>/<i>.png`` with ``i`` zero-padded to at least six
    digits; its seed is derived deterministically from ``(seed, i)``.

    Args:
        root: Output directory; created if missing.
        n: Number of images, at least 1.
        resolution: Side length in pixels, at least :data:`MIN_RESOLUTION`.
        seed: Data-set seed.

    Returns:
        ``root`` as a :class:`pathlib.Path`.

    Raises:
        ValueError: If ``n`` is below 1 or ``resolution`` is invalid.
    """
    # PIL rather than torchvision.io.write_png, which torchvision 0.29 deprecates.
    from PIL import Image

    if int(n) < 1:
        raise ValueError(f"n must be at least 1, got {n!r}; ask for one image or more")
    _check(0, resolution)
    root = pathlib.Path(root)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    digits = max(6, len(str(int(n) - 1)))
    for i in range(int(n)):
        label = i % len(CLASSES)
        img = render_landscape(_image_seed(seed, i), label, resolution)
        pixels = np.rint(img.transpose(1, 2, 0) * 255.0).astype(np.uint8)
        Image.fromarray(pixels).save(root / CLASSES[label] / f"{i:0{digits}d}.png")
    return root


def _positive_int(text: str) -> int:
    """Parses an image count for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _resolution(text: str) -> int:
    """Parses a resolution for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < MIN_RESOLUTION:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_RESOLUTION}, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    """Runs the ``pirtune-landscapes`` command line: writes an ImageFolder of scenes.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.
    """
    parser = argparse.ArgumentParser(
        prog="pirtune-landscapes",
        description="Write procedural coast/mountain scenes as <out>/<class>/<id>.png.",
    )
    parser.add_argument("--out", required=True, type=pathlib.Path, help="output directory")
    parser.add_argument("--n", type=_positive_int, default=1000, help="number of images")
    parser.add_argument("--resolution", type=_resolution, default=64, help="side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="data-set seed")
    args = parser.parse_args(argv)
    root = write_imagefolder(args.out, args.n, args.resolution, args.seed)
    print(f"wrote {args.n} scenes ({args.resolution}x{args.resolution}) to {root}")


if __name__ == "__main__":
    main()
