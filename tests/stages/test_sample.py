"""Stage ``sample``: a grid of every class, drawn from seeded latents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pirtune import train
from pirtune.models.bundle import load_bundle

TILE = 16 + 1  # a TINY image and the grid's one-pixel padding


def _grid(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_sample_draws_each_class_in_its_row_from_seeded_latents(make_cfg, tiny_generator):
    cfg = make_cfg("stage=sample", f"generator_ckpt={tiny_generator}", "sample.per_class=8")
    out = train.run(cfg)
    assert out == Path(cfg.run_dir) / "samples.png"
    grid = _grid(out)
    assert grid.shape == (2 * TILE + 1, 8 * TILE + 1, 3)  # two classes, eight a row

    # The same images drawn here: latents from torch.Generator().manual_seed(seed), then
    # class 0 eight times and class 1 eight times.
    generator, _, _ = load_bundle(tiny_generator)
    z = torch.randn(16, generator.latent_dim, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0] * 8 + [1] * 8)
    with torch.no_grad():
        expected = generator.eval().images(z, labels).clamp(0, 1).permute(0, 2, 3, 1) * 255
    for k in range(16):
        row, col = divmod(k, 8)
        tile = grid[1 + row * TILE:row * TILE + TILE, 1 + col * TILE:col * TILE + TILE]
        assert np.abs(tile - expected[k].numpy()).max() <= 1.0, k  # 8-bit rounding

    other = train.run(make_cfg("stage=sample", f"generator_ckpt={tiny_generator}",
                               "sample.per_class=8", "sample.seed=1"))
    assert np.abs(_grid(other) - grid).mean() > 1.0  # another seed, other latents
