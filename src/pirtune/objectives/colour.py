"""Simulated users that like a colour, or one colour per vertical strip (PIR paper, C.4.3).

With the image split along its width into n strips (left to right) and
colour c_s wanted in strip s,

    PIR(i) = sqrt( Σ_s ‖i[c_s, :, strip_s]‖² / ‖i‖² ),

so n = 1 is the single-colour objective (e.g. "color_red"), n = 2 the paper's
left/right objective ("color_red_blue"), n = 3 its thirds. The split runs along
the width because left/right colour differences carry little class information
(flips are a standard augmentation), unlike a blue top over a green bottom.

Choice the paper leaves open: for widths not divisible by n, strip s spans
columns round(s·W/n) to round((s+1)·W/n).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pirtune.errors import UsageError
from pirtune.objectives.vgg import pir_from_bank

CHANNELS: dict[str, int] = {"red": 0, "green": 1, "blue": 2}


def colour_name(colours: Sequence[str]) -> str:
    """The objective's name, e.g. ``color_red_blue``; also names its run directory.

    Names keep the paper's spelling (C.4.3), as the config files and the README do.
    """
    return "color_" + "_".join(colours)


class ColourObjective(nn.Module):
    """A simulated user whose PIR is the share of image energy in the wanted colour per strip.

    Args:
        colours: One colour name per vertical strip, left to right, from
            "red", "green", "blue"; a bare string is one colour.
    """

    def __init__(self, colours: Sequence[str]) -> None:
        super().__init__()
        colours = (colours,) if isinstance(colours, str) else tuple(colours)
        if not colours:
            raise UsageError(
                f"objective.colours is empty; give one or more of: {', '.join(CHANNELS)}"
            )
        for colour in colours:
            if colour not in CHANNELS:
                raise UsageError(
                    f"colour {colour!r} is unknown; choose from: {', '.join(CHANNELS)}"
                )
        self.colours = colours
        self.channels = tuple(CHANNELS[colour] for colour in colours)
        self.name = colour_name(colours)

    @staticmethod
    def name_of(colours: Sequence[str], **_: Any) -> str:
        """The name an objective built with these arguments has (it names its run)."""
        return colour_name((colours,) if isinstance(colours, str) else colours)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map images float [B, 3, H, W] in [0, 1] to PIR float [B] in [0, 1].

        Differentiable w.r.t. ``images``; an all-black image has PIR 0.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W], got shape {tuple(images.shape)}")
        n, width = len(self.colours), images.shape[-1]
        bounds = [round(s * width / n) for s in range(n + 1)]
        column_energy = images.square().sum(2)  # [B, 3, H, W] -> [B, 3, W]
        strip_energy = torch.stack(  # [B, 3, W] -> [B, 3, n]
            [column_energy[..., a:b].sum(-1) for a, b in zip(bounds[:-1], bounds[1:], strict=True)],
            dim=-1,
        )
        # The strips tile the width, so the (channel, strip) blocks hold all of
        # ‖i‖²: the VGG formula over these blocks is C.4.3's, zero guard included.
        wanted = [channel * n + strip for strip, channel in enumerate(self.channels)]
        return pir_from_bank(strip_energy.flatten(1), wanted)  # [B, 3·n] -> [B]

    def describe(self) -> dict[str, Any]:
        """The objective's parameters, for reports."""
        return {"name": self.name, "kind": "colour", "colours": list(self.colours)}
