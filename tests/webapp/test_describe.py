"""The final image's description: colour names read off the pixels."""

from __future__ import annotations

import pytest
import torch

from pirtune.webapp.describe import colour_name, describe


@pytest.mark.parametrize(("rgb", "name"), [
    ((0.9, 0.1, 0.1), "red"), ((0.95, 0.55, 0.1), "orange"), ((0.9, 0.85, 0.1), "yellow"),
    ((0.1, 0.7, 0.2), "green"), ((0.1, 0.6, 0.6), "teal"), ((0.1, 0.2, 0.9), "blue"),
    ((0.5, 0.1, 0.8), "purple"), ((0.9, 0.2, 0.6), "pink"), ((0.95, 0.1, 0.05), "red"),
    ((0.05, 0.05, 0.3), "dark blue"), ((0.7, 0.75, 0.9), "pale blue"),
    ((0.05, 0.05, 0.05), "black"), ((0.95, 0.95, 0.95), "white"), ((0.5, 0.5, 0.5), "grey"),
    ((0.7, 0.7, 0.7), "light grey"), ((0.2, 0.2, 0.2), "dark grey"),
])
def test_colours_are_named_by_hue_and_lightness(rgb, name):
    assert colour_name(rgb) == name


def test_a_sky_over_grass_is_described_band_by_band():
    image = torch.zeros(3, 30, 30)
    image[2, :10] = 0.9          # blue sky in the upper third
    image[1, 10:] = 0.7          # green below
    assert describe(image, "coast", 12) == (
        "A dim coast scene, blue above, green below; found in 12 picks.")
    assert describe(torch.full((3, 8, 8), 0.8), "mountain", 1) == (
        "A bright mountain scene, light grey throughout; found in 1 pick.")
