"""The sky, and the light it casts on whatever is painted below it.

A vertical gradient for one of three times of day drawn with weights day 55 %
(clear or, sometimes, overcast), dusk 27 % (purple/pink/orange), night 18 % (dark
navy); a sun (day, dusk) or a full or crescent moon (night) that is sometimes
absent, low enough to hide behind ridges, or set half below the horizon; stars on
most nights; soft fractal-noise clouds tinted by the time of day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pirtune.data.procedural.canvas import _F, _c, _jitter, _over, _pick, _rgb, _smoothstep, _u
from pirtune.data.procedural.noise import _fbm

_TIMES = ("day", "dusk", "night")
_TIME_WEIGHTS = (0.55, 0.27, 0.18)


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
