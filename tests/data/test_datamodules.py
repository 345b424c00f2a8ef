"""ImageDataModule: procedural scenes, real ImageFolders, and the errors for bad folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pirtune.data.datamodules import ImageDataModule
from pirtune.data.procedural import render_batch, write_imagefolder
from pirtune.errors import UsageError


def test_procedural_set_is_balanced_uint8_and_cached(tmp_path):
    dm = ImageDataModule(num_images=12, resolution=16, batch_size=4, seed=3,
                         cache_dir=str(tmp_path))
    dm.setup()
    images, labels = dm.train_set.tensors
    assert images.dtype == torch.uint8 and images.shape == (12, 3, 16, 16)
    assert labels.bincount().tolist() == [6, 6]
    # The stored scene is the renderer's, rounded to 8 bits.
    expected = render_batch([3 * 1_000_003 + 5], [1], 16)[0]
    torch.testing.assert_close(images[5].float() / 255, expected, atol=0.5 / 255, rtol=0)
    (cache,) = tmp_path.iterdir()
    again = ImageDataModule(num_images=12, resolution=16, seed=3, cache_dir=str(tmp_path))
    again.setup()
    assert torch.equal(again.train_set.tensors[0], images)
    assert list(tmp_path.iterdir()) == [cache]


def test_batches_reach_the_model_in_minus_one_to_one():
    dm = ImageDataModule(num_images=8, resolution=16, batch_size=8, hflip=False)
    raw_images, raw_labels = next(iter(dm.train_dataloader()))
    images, labels = dm.to_model_input((raw_images, raw_labels))
    assert images.dtype == torch.float32 and images.shape == (8, 3, 16, 16)
    torch.testing.assert_close(images, raw_images.float() / 127.5 - 1)
    assert torch.equal(labels, raw_labels)


def test_hflip_flips_some_images_and_only_mirrors_them():
    torch.manual_seed(0)
    dm = ImageDataModule(num_images=64, resolution=16, batch_size=64, hflip=True)
    raw, labels = next(iter(dm.train_dataloader()))
    images, _ = dm.to_model_input((raw, labels))
    plain = raw.float() / 127.5 - 1
    same = (images == plain).flatten(1).all(1)
    mirrored = (images == plain.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all()
    assert 10 < mirrored.sum() < 54


def test_imagefolder_of_photos_loads_resized(tmp_path):
    from PIL import Image

    # Photos of two sizes and aspect ratios, in two classes (folder names, sorted).
    g = torch.Generator().manual_seed(0)
    photos = {"coast/a.png": (24, 36), "coast/b.png": (30, 30), "mountain/c.png": (40, 20)}
    pixels = {}
    for name, (height, width) in photos.items():
        array = torch.randint(0, 256, (height, width, 3), generator=g, dtype=torch.uint8)
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array.numpy()).save(tmp_path / "photos" / name)
        pixels[name] = array
    dm = ImageDataModule(root=str(tmp_path / "photos"), resolution=16, batch_size=2)
    dm.setup()
    for index, name in enumerate(sorted(photos)):
        image, label = dm.train_set[index]
        assert image.dtype == torch.uint8 and image.shape == (3, 16, 16)
        assert label == (0 if name.startswith("coast") else 1)
        # The shorter side resized to 16 (antialiased), then the centre 16×16 cut out.
        height, width = photos[name]
        size = (16, round(16 * width / height)) if height < width else (
            round(16 * height / width), 16)
        resized = torch.nn.functional.interpolate(
            pixels[name].permute(2, 0, 1)[None].float(), size=size, mode="bilinear",
            antialias=True, align_corners=False)[0]
        top, left = (size[0] - 16) // 2, (size[1] - 16) // 2
        expected = resized[:, top:top + 16, left:left + 16]
        assert (image.float() - expected).abs().max() <= 1.0, name  # 8-bit rounding
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 16, 16)


def _corrupt(path: Path) -> None:
    path.write_bytes(b"not a png at all")


@pytest.mark.parametrize("case", ["missing", "empty", "no_images", "unreadable", "classes"])
def test_bad_folders_name_the_path(tmp_path, case):
    root = tmp_path / "photos"
    if case == "empty":
        root.mkdir()
    elif case == "no_images":
        (root / "coast").mkdir(parents=True)
    elif case in ("unreadable", "classes"):
        write_imagefolder(root, n=4, resolution=16)
    bad = root / "mountain" / "000001.png"
    if case == "unreadable":
        _corrupt(bad)
    dm = ImageDataModule(root=str(root), resolution=16,
                         num_classes=3 if case == "classes" else 2)
    expected = {"missing": f"{root} does not exist", "empty": f"{root} holds no images",
                "no_images": f"{root} holds no images", "unreadable": f"cannot read image {bad}",
                "classes": "has 2 classes (coast, mountain) but data.num_classes=3"}[case]
    with pytest.raises(UsageError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        dm.setup()
