"""A short plain-words description of a finished session's image.

The search knows no words, only latents, so the description is read off the
pixels: the class the person chose, the colour of the upper and the lower
third (sky and ground in a landscape), how bright the image is, and how many
picks it took. Colours are named from the mean RGB of each band, by hue (HSV)
for coloured bands and by lightness for grey ones.
"""

from __future__ import annotations

import colorsys

import torch

# Upper hue bounds (degrees) of each colour name; red wraps round past 345°.
HUES = ((15, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (200, "teal"),
        (255, "blue"), (290, "purple"), (345, "pink"), (360, "red"))


def colour_name(rgb: tuple[float, float, float]) -> str:
    """A name such as "dark blue", "pale yellow" or "grey" for an RGB colour in [0, 1]."""
    hue, saturation, value = colorsys.rgb_to_hsv(*rgb)
    if value < 0.15:
        return "black"
    if saturation < 0.15:
        return "white" if value > 0.85 else "light grey" if value > 0.6 else (
            "grey" if value > 0.3 else "dark grey")
    name = next(label for bound, label in HUES if hue * 360 < bound)
    if value < 0.4:
        return f"dark {name}"
    if saturation < 0.4:
        return f"pale {name}"
    return name


def describe(image: torch.Tensor, class_name: str, picks: int) -> str:
    """One sentence about ``image`` ([3, H, W] in [0, 1]) of ``class_name`` after ``picks``."""
    third = image.shape[1] // 3
    top = colour_name(tuple(image[:, :third].mean(dim=(1, 2)).tolist()))
    bottom = colour_name(tuple(image[:, -third:].mean(dim=(1, 2)).tolist()))
    brightness = image.mean().item()
    light = "bright" if brightness > 0.6 else "dim" if brightness < 0.3 else "mid-toned"
    bands = f"{top} throughout" if top == bottom else f"{top} above, {bottom} below"
    return (f"A {light} {class_name} scene, {bands}; found in {picks} "
            f"pick{'s' if picks != 1 else ''}.")
