"""Differentiable augmentation of the discriminator's inputs (DiffAugment, Zhao et al. 2020).

Not in the PIR paper. A discriminator trained on a few thousand images
memorises them; augmenting *both* real and generated images, with operations
the generator's gradient passes through, keeps it honest without the
generator learning to draw the augmentation (the same random operation family
is applied to both sides, so an augmented fake can only match an augmented
real by the fake matching the real).

Policies (comma-separated names, applied in order, each with fresh randomness
per image):

* ``color``: brightness ±0.25, saturation ×[0, 2], contrast ×[0.5, 1.5];
* ``translation``: shift by up to 1/8 of the side, zero-padded;
* ``cutout``: zero a square of half the side at a random place.

Images are in the discriminator's range [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def _color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5) * 0.5
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    grid_b, grid_y, grid_x = torch.meshgrid(
        torch.arange(n, device=x.device), torch.arange(h, device=x.device),
        torch.arange(w, device=x.device), indexing="ij")
    grid_y = torch.clamp(grid_y + dy + 1, 0, h + 1)
    grid_x = torch.clamp(grid_x + dx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # the shifted-in border reads the zero padding
    return padded.permute(0, 2, 3, 1)[grid_b, grid_y, grid_x].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # The square's top-left corner; it may hang over the edge, as in DiffAugment.
    top = torch.randint(-(ch // 2), h - ch // 2, (n, 1, 1), device=x.device)
    left = torch.randint(-(cw // 2), w - cw // 2, (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPERATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "color": _color,
    "translation": _translation,
    "cutout": _cutout,
}


def parse_policy(policy: str | None) -> tuple[str, ...]:
    """The operation names of a policy string; a clear error for an unknown one."""
    if not policy:
        return ()
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in OPERATIONS]
    if unknown:
        raise ValueError(f"augmentation {unknown[0]!r} in model.augment={policy!r} is unknown; "
                         f"use a comma-separated subset of {', '.join(OPERATIONS)}")
    return names


def diff_augment(x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    """``x`` [B, 3, H, W] with each named operation applied (differentiably)."""
    for name in names:
        x = OPERATIONS[name](x)
    return x
