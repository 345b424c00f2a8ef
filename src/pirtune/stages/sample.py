"""Stage ``sample``: a class-by-class grid of a generator's samples, in ``samples.png``."""

from __future__ import annotations

import logging
from pathlib import Path

from torchvision.utils import save_image

from pirtune.files import atomic_write
from pirtune.models.bundle import class_grid, load_sampler
from pirtune.stages.config import SampleConfig
from pirtune.stages.rundir import Run
from pirtune.stages.tracking import parameter_counts, track

log = logging.getLogger(__name__)


def sample(cfg: SampleConfig, run: Run) -> Path:
    """Write a grid of ``cfg.generator``'s samples to ``<run dir>/samples.png``; return it."""
    generator, meta = load_sampler(cfg.generator)
    images = class_grid(generator, cfg.per_class, seed=cfg.seed)
    out = run.dir / "samples.png"
    with atomic_write(out) as f:
        save_image(images, f, format="png", nrow=8, padding=1)
    with track(run, "sample") as tracker:
        tracker.config(parameter_counts(generator=generator))
        tracker.images("sample/samples", [out], captions=[f"{cfg.generator}, one class after "
                                                          "another"])
    log.info("sample: %s (generator %s after %d iterations; one class after another)", out,
             cfg.generator, meta.get("iteration", -1))
    print(f"samples written to {out}")
    return out
