"""Tests for the procedural coast/mountain scenes in ``pirtune.data.procedural``."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from pirtune.data import landscapes, procedural
from pirtune.data.procedural import (
    CLASSES,
    main,
    render_batch,
    render_landscape,
    write_imagefolder,
)
from pirtune.data.procedural.imagefolder import _image_seed


@functools.cache
def _scenes(label: int, n: int = 100, res: int = 64) -> np.ndarray:
    """Renders seeds 1000..1000+n of one class once per session: [n, 3, res, res]."""
    return np.stack([render_landscape(1000 + s, label, res) for s in range(n)])


def _horizontal_to_vertical_contrast(img: np.ndarray) -> float:
    """Returns mean |∂x L| / mean |∂y L| of luminance over the lower 60 % of the image.

    The lower part of a coast is sea and beach: horizon, wave bands, shoreline and
    sand ripples all run horizontally, so brightness changes mostly from row to row
    and the ratio is small. The lower part of a mountain scene is flanks, spurs and
    ridgelines running diagonally, so changes along rows are about as strong and the
    ratio is large. Rendering 200 scenes per class at 64x64 put the coasts' 90th
    percentile near 0.41 and the mountains' 10th percentile near 0.50.
    """
    lum = img.mean(axis=0)[img.shape[1] * 2 // 5 :]
    dx = np.abs(np.diff(lum, axis=1)).mean()
    dy = np.abs(np.diff(lum, axis=0)).mean()
    return float(dx / (dy + 1e-6))


def test_classes_are_alphabetical_imagefolder_order() -> None:
    assert CLASSES == ("coast", "mountain")
    assert list(CLASSES) == sorted(CLASSES)


@pytest.mark.parametrize("label", [0, 1])
def test_same_seed_gives_identical_image(label: int) -> None:
    first = render_landscape(7, label)
    np.random.seed(123)  # global state must not leak into the scene
    torch.manual_seed(123)
    second = render_landscape(7, label)
    assert np.array_equal(first, second)


@pytest.mark.parametrize("label", [0, 1])
def test_different_seeds_give_different_images(label: int) -> None:
    images = [render_landscape(seed, label) for seed in range(5)]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i] - images[j]).mean() > 0.01


@pytest.mark.parametrize("resolution", [16, 32, 37, 64, 128])
@pytest.mark.parametrize("label", [0, 1])
def test_shape_dtype_and_range(label: int, resolution: int) -> None:
    img = render_landscape(3, label, resolution)
    assert img.shape == (3, resolution, resolution)
    assert img.dtype == np.float32
    assert np.isfinite(img).all()
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert img.std() > 0.02  # a scene, not a flat fill


def test_classes_are_distinguishable_by_edge_orientation() -> None:
    threshold = 0.46
    coast = np.array([_horizontal_to_vertical_contrast(i) for i in _scenes(0)])
    mountain = np.array([_horizontal_to_vertical_contrast(i) for i in _scenes(1)])
    assert (coast < threshold).mean() >= 0.9
    assert (mountain >= threshold).mean() >= 0.9


def test_pixel_statistics_vary_widely() -> None:
    images = np.concatenate([_scenes(0), _scenes(1)])  # 200 scenes
    channel_means = images.mean(axis=(2, 3))  # [200, 3]
    brightness = channel_means.mean(axis=1)
    assert brightness.std() > 0.12
    assert brightness.min() < 0.2 and brightness.max() > 0.6  # nights and bright days
    assert (channel_means.std(axis=0) > 0.12).all()
    # Colour casts differ too: some scenes are much bluer than red, others the reverse.
    blue_minus_red = channel_means[:, 2] - channel_means[:, 0]
    assert blue_minus_red.min() < -0.1 and blue_minus_red.max() > 0.2


def test_render_batch_matches_single_renders() -> None:
    seeds, labels = [4, 5, 6], [0, 1, 0]
    batch = render_batch(seeds, labels, resolution=32)
    assert isinstance(batch, torch.Tensor)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32
    for i, (seed, label) in enumerate(zip(seeds, labels, strict=True)):
        assert np.array_equal(batch[i].numpy(), render_landscape(seed, label, 32))
    assert render_batch([], [], 32).shape == (0, 3, 32, 32)


def test_render_batch_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="3 and 2"):
        render_batch([1, 2, 3], [0, 1])


@pytest.mark.parametrize("label", [2, -1, 0.5])
def test_bad_label_raises_with_value(label) -> None:
    with pytest.raises(ValueError, match=f"got {label!r}"):
        render_landscape(0, label)


@pytest.mark.parametrize("resolution", [15, 0, -64])
def test_bad_resolution_raises_with_value(resolution: int) -> None:
    with pytest.raises(ValueError, match=f"got {resolution}") as info:
        render_landscape(0, 0, resolution)
    assert ">= 16" in str(info.value)
    with pytest.raises(ValueError, match=f"got {resolution}"):
        render_batch([0], [0], resolution)


def test_write_imagefolder_tree_loads_with_imagefolder(tmp_path) -> None:
    root = write_imagefolder(tmp_path / "scenes", n=10, resolution=16, seed=3)
    assert root == tmp_path / "scenes"
    coast = sorted(p.name for p in (root / "coast").iterdir())
    mountain = sorted(p.name for p in (root / "mountain").iterdir())
    assert coast == ["000000.png", "000002.png", "000004.png", "000006.png", "000008.png"]
    assert mountain == ["000001.png", "000003.png", "000005.png", "000007.png", "000009.png"]

    dataset = ImageFolder(str(root))
    assert dataset.class_to_idx == {"coast": 0, "mountain": 1}
    assert len(dataset) == 10
    assert sorted(dataset.targets) == [0] * 5 + [1] * 5
    image, target = dataset[0]
    assert image.size == (16, 16) and target == 0

    with Image.open(root / "mountain" / "000003.png") as png:
        assert png.format == "PNG" and png.mode == "RGB" and png.size == (16, 16)
        pixels = np.asarray(png).transpose(2, 0, 1) / 255.0
    # Only 8-bit quantisation separates the file from the in-memory render.
    assert np.abs(pixels - render_landscape(_image_seed(3, 3), 1, 16)).max() <= 0.5 / 255 + 1e-6


def test_write_imagefolder_is_deterministic(tmp_path) -> None:
    a = write_imagefolder(tmp_path / "a", n=4, resolution=16, seed=11)
    b = write_imagefolder(tmp_path / "b", n=4, resolution=16, seed=11)
    c = write_imagefolder(tmp_path / "c", n=4, resolution=16, seed=12)
    name = "coast/000002.png"
    assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / name).read_bytes() != (c / name).read_bytes()


def test_write_imagefolder_rejects_empty(tmp_path) -> None:
    with pytest.raises(ValueError, match="got 0"):
        write_imagefolder(tmp_path, n=0)


def test_cli_writes_and_reports(tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    main(["--out", str(out), "--n", "3", "--resolution", "16", "--seed", "5"])
    assert str(out) in capsys.readouterr().out
    assert len(list(out.glob("*/*.png"))) == 3


@pytest.mark.parametrize(("flag", "value"), [("--n", "0"), ("--resolution", "8"), ("--n", "lots")])
def test_cli_rejects_bad_values(tmp_path, capsys, flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--out", str(tmp_path), flag, value])
    assert info.value.code == 2
    assert value in capsys.readouterr().err


def test_landscapes_module_reexports_the_package() -> None:
    # Older imports (and the pirtune-landscapes script of an existing install) use it.
    for name in procedural.__all__:
        assert getattr(landscapes, name) is getattr(procedural, name)
