"""Scenes written to disk as a torchvision ``ImageFolder`` tree of PNG files."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from pirtune.data.procedural.render import CLASSES, _check, render_landscape


def _image_seed(seed: int, index: int) -> int:
    """Derives image ``index``'s seed from the data-set ``seed``, stably across runs."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def write_imagefolder(
    root: str | os.PathLike, n: int, resolution: int = 64, seed: int = 0
) -> pathlib.Path:
    """Writes ``n`` scenes as a torchvision ``ImageFolder`` tree of PNG files.

    Image ``i`` has class ``i % 2`` (so the classes alternate and stay balanced) and
    is saved as ``<root>/<class>/<i>.png`` with ``i`` zero-padded to at least six
    digits; its seed is derived deterministically from ``(seed, i)``.

    Args:
        root: Output directory; created if missing.
        n: Number of images, at least 1.
        resolution: Side length in pixels, at least :data:`MIN_RESOLUTION`.
        seed: Data-set seed.

    Returns:
        ``root`` as a :class:`pathlib.Path`.

    Raises:
        ValueError: If ``n`` is below 1 or ``resolution`` is invalid.
    """
    # PIL rather than torchvision.io.write_png, which torchvision 0.29 deprecates.
    from PIL import Image

    if int(n) < 1:
        raise ValueError(f"n must be at least 1, got {n!r}; ask for one image or more")
    _check(0, resolution)
    root = pathlib.Path(root)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    digits = max(6, len(str(int(n) - 1)))
    for i in range(int(n)):
        label = i % len(CLASSES)
        img = render_landscape(_image_seed(seed, i), label, resolution)
        pixels = np.rint(img.transpose(1, 2, 0) * 255.0).astype(np.uint8)
        Image.fromarray(pixels).save(root / CLASSES[label] / f"{i:0{digits}d}.png")
    return root
