"""What stands under the sky: mountain ridgelines or a coast.

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
"""

from __future__ import annotations

import numpy as np

from pirtune.data.procedural.canvas import (
    _F,
    _c,
    _edge,
    _jitter,
    _over,
    _pick,
    _rgb,
    _smoothstep,
    _u,
)
from pirtune.data.procedural.noise import _midpoint_ridge, _noise1d, _value_noise
from pirtune.data.procedural.sky import _Light

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
