"""Colour objectives (C.4.3) against hand-computed values and a numpy re-computation."""

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from pirtune.errors import UsageError
from pirtune.objectives import ColourObjective, build_objective

RED, GREEN, BLUE = 0, 1, 2


def _image(height: int = 4, width: int = 4) -> torch.Tensor:
    return torch.zeros(1, 3, height, width, dtype=torch.float64)


def test_pure_red_image_is_all_red_and_no_blue():
    image = _image()
    image[:, RED] = 0.7
    assert ColourObjective(["red"])(image).item() == pytest.approx(1.0)
    assert ColourObjective(["blue"])(image).item() == pytest.approx(0.0)


def test_red_left_half_and_blue_right_half_scores_one():
    image = _image(width=6)
    image[:, RED, :, :3] = 0.4
    image[:, BLUE, :, 3:] = 0.9
    assert ColourObjective(["red", "blue"])(image).item() == pytest.approx(1.0)
    # The same image with the sides swapped has none of its energy where wanted.
    assert ColourObjective(["blue", "red"])(image).item() == pytest.approx(0.0)


@pytest.mark.parametrize("colour", ["red", "green", "blue"])
def test_grey_image_scores_one_over_sqrt_three(colour):
    image = torch.full((2, 3, 5, 5), 0.5, dtype=torch.float64)
    expected = torch.full((2,), 1 / math.sqrt(3), dtype=torch.float64)
    assert_close(ColourObjective([colour])(image), expected)


def test_three_colour_thirds_by_hand():
    # One row, six columns: red 1 everywhere, green 0, blue 2 in the last third.
    image = _image(height=1, width=6)
    image[:, RED] = 1.0
    image[:, BLUE, :, 4:] = 2.0
    total = 6 * 1.0 + 2 * 4.0
    # Wanted: red in columns 0-1 (2), green in 2-3 (0), blue in 4-5 (8).
    assert ColourObjective(["red", "green", "blue"])(image).item() == pytest.approx(
        math.sqrt(10 / total)
    )
    # Reversed: blue in 0-1 (0), green in 2-3 (0), red in 4-5 (2).
    assert ColourObjective(["blue", "green", "red"])(image).item() == pytest.approx(
        math.sqrt(2 / total)
    )


def _numpy_pir(image: np.ndarray, channels: list[int]) -> np.ndarray:
    n, width = len(channels), image.shape[-1]
    out = []
    for img in image:
        wanted = 0.0
        for strip, channel in enumerate(channels):
            a, b = round(strip * width / n), round((strip + 1) * width / n)
            wanted += np.sum(img[channel, :, a:b] ** 2)
        out.append(np.sqrt(wanted / np.sum(img**2)))
    return np.array(out)


@pytest.mark.parametrize(
    ("colours", "width"),
    [(["green"], 7), (["red", "blue"], 8), (["blue", "red", "green"], 7), (["red", "red"], 5)],
)
def test_random_images_match_a_numpy_recomputation(colours, width):
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(4, 3, 6, width, generator=generator, dtype=torch.float64)
    channels = [{"red": RED, "green": GREEN, "blue": BLUE}[c] for c in colours]
    expected = torch.from_numpy(_numpy_pir(images.numpy(), channels))
    assert_close(ColourObjective(colours)(images), expected)


def test_black_image_scores_zero_with_finite_gradient():
    image = _image().requires_grad_()
    pir = ColourObjective(["red", "green"])(image)
    pir.sum().backward()
    assert_close(pir, torch.zeros(1, dtype=torch.float64))
    assert torch.isfinite(image.grad).all()


def test_colour_shares_of_energy_add_up_and_ignore_brightness():
    images = torch.rand(64, 3, 8, 9, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    images[1, 1:] = 0.0  # pure red
    red, green, blue = (ColourObjective([c])(images) for c in ("red", "green", "blue"))
    # Each colour's PIR² is its share of the image's energy: the three shares make 1 ...
    assert_close(red**2 + green**2 + blue**2, torch.ones(64, dtype=torch.float64))
    assert_close(ColourObjective(["green"])(images[1:2]), torch.zeros(1, dtype=torch.float64))
    # ... and blue wanted in both halves is blue wanted everywhere.
    assert_close(ColourObjective(["blue", "blue"])(images), blue)
    # A darker or brighter copy of an image has the same shares.
    assert_close(ColourObjective(["red", "blue"])(0.3 * images),
                 ColourObjective(["red", "blue"])(images))


def test_gradients_match_finite_differences():
    image = torch.rand(2, 3, 3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    image[1, :, :, 3:] = 0.0  # a zero region: the guard must not break the gradient
    objective = ColourObjective(["red", "blue"])
    assert torch.autograd.gradcheck(objective, (image.requires_grad_(),))


def test_unknown_colour_names_it_and_the_choices():
    with pytest.raises(UsageError, match=r"'purple'.*red, green, blue"):
        ColourObjective(["red", "purple"])


def test_name_describe_and_build_objective():
    objective = build_objective({"_target_": "pirtune.objectives.ColourObjective",
                                 "colours": ["red", "blue"]})
    assert isinstance(objective, ColourObjective)
    assert objective.name == "color_red_blue"
    assert objective.describe() == {"name": "color_red_blue", "kind": "colour",
                                    "colours": ["red", "blue"]}
    assert ColourObjective("green").name == "color_green"
    with pytest.raises(UsageError, match=r"'colour_red' is not an objective class.*"
                                         r"ColourObjective, pirtune.objectives.VGGObjective"):
        build_objective({"_target_": "colour_red"})
    with pytest.raises(UsageError, match="missing 1 required positional argument: 'colours'"):
        build_objective({"_target_": "pirtune.objectives.ColourObjective"})
