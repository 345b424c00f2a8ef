"""The procedural scenes are pinned: fixed (seed, label, resolution) render to known bytes.

The digests were computed from ``pirtune.data.landscapes`` before it was split
into ``pirtune.data.procedural`` (numpy 2.4.6, x86-64), so any change to a
painter, the noise, the grade or the ImageFolder writer that moves a single
float32 bit fails here. A deliberate change to the scenes updates the digests
in the same commit (the datamodule's cache key changes with the source anyway).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from pirtune.data.procedural import render_batch, render_landscape, write_imagefolder

SCENES = {
    (0, 0, 16): "5831a5f1a55fb30ebda7d906e4c8955055a7dfba9dc2b4f5a944c42f25ab4983",
    (1, 1, 16): "e1546baeb10dceb7788f422e1c3552c850eaf9f2385e5a5b0ab95cd1bf59c047",
    (7, 0, 32): "486a3e9251aeaa931dd1c7bbea8d0f76947935036a967b8a3c49fb9748d3ce30",
    (7, 1, 32): "d45c88e9864cb65e45501040644affc042b45f9a24400caff63048cc4ef46f6e",
    (42, 0, 64): "996bcfc7e96d1a22f7fcdfd03fdf27bd802757fc72c30d729a9a1fe22c9b8034",
    (42, 1, 64): "8ba220146d3465122c7e9f702376a114c9e2ec45c975cb3db87c45052f8be621",
    (2024, 0, 128): "5d72f969f8dc68fdd614dce3eb0564ec7bce55fbd4615b58d6628c437b2f7879",
    (2024, 1, 128): "5ce5970646b7bface2b8b8ddbb163a2444b35da1c15b57f35bd50b53c269c2ea",
}


@pytest.mark.parametrize(("seed", "label", "resolution"), list(SCENES))
def test_scene_bytes_are_pinned(seed: int, label: int, resolution: int) -> None:
    image = render_landscape(seed, label, resolution)
    assert image.dtype == np.float32
    assert hashlib.sha256(image.tobytes()).hexdigest() == SCENES[seed, label, resolution]


def test_batch_bytes_are_pinned() -> None:
    # 96 scenes per class reach every time of day, moon shape, beach and rock branch.
    seeds = list(range(192))
    batch = render_batch(seeds, [s % 2 for s in seeds], 32)
    digest = hashlib.sha256(batch.numpy().tobytes()).hexdigest()
    assert digest == "21f2b084c027e4e69b068bc2017a6c016799b7eb3b800763a5e6d17b4d34db09"


def test_imagefolder_is_pinned(tmp_path) -> None:
    root = write_imagefolder(tmp_path, 6, 16, seed=3)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(np.asarray(Image.open(path)).tobytes())
    assert digest.hexdigest() == "5aa690f0cc911d94f71e64dd79cde374f651d798b5353397174568d80dbcc20a"
