"""Stage ``collect``: simulated users score the round's samples (section 2.2).

Draws ``num_images`` images (uniform classes) from the round's generator,
scores them with the objective (the true PIR), shows each ``impressions``
times (clicks ~ Binomial) and writes the PIR dataset ``pir_data/``
(``pirtune.data.pir_dataset``); W&B gets a table of the images with their
class, true and observed PIR, and the dataset as a ``pir-dataset`` artifact.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from pirtune.data.impressions import simulate_clicks
from pirtune.data.pir_dataset import IMAGES, write_pir_dataset
from pirtune.models.bundle import draw_latents, load_sampler, render
from pirtune.objectives import build_objective, score
from pirtune.stages.config import CollectConfig
from pirtune.stages.rundir import Round, begin_stage
from pirtune.stages.tracking import StageTracker, parameter_counts, track
from pirtune.stages.training import barrier, rank_zero

log = logging.getLogger(__name__)


def collect(cfg: CollectConfig, rnd: Round) -> Path:
    """Write the round's PIR dataset (unless done); return its folder."""
    out = rnd.pir_data
    if rank_zero():  # under DDP, only rank 0 collects
        record = begin_stage("collect", rnd.dir, {**cfg.fingerprint(), "from": str(rnd.start)},
                             out / "pir.csv")
        if record is not None:
            objective = build_objective(cfg.objective)
            generator, meta = load_sampler(rnd.start)
            with track(rnd.run, "collect", rnd, record) as tracker:
                tracker.config(parameter_counts(generator=generator))
                _collect(cfg, rnd, objective, generator, meta, tracker)
    barrier()
    return out


def _collect(cfg: CollectConfig, rnd: Round, objective: nn.Module, generator: nn.Module,
             meta: dict, tracker: StageTracker) -> None:
    seed = cfg.seed + 2 * (rnd.index - 1)  # fresh latents and clicks every round
    rng = torch.Generator().manual_seed(seed)
    classes = torch.randint(generator.num_classes, (cfg.num_images,), generator=rng)
    z = draw_latents(generator, classes, rng)
    images = render(generator, z, classes, cfg.batch_size)
    true_pir = score(objective, images, cfg.batch_size)
    clicks = simulate_clicks(true_pir, cfg.impressions, torch.Generator().manual_seed(seed + 1))
    # Ids carry the round, so the rounds' datasets join without clashes.
    ids = [f"r{rnd.index}_{i:06d}" for i in range(cfg.num_images)]
    write_pir_dataset(
        rnd.pir_data, (images * 255).round().to(torch.uint8), classes, cfg.impressions, clicks,
        true_pir=true_pir, latents=z, image_ids=ids,
        meta={"objective": objective.describe(), "generator_ckpt": str(rnd.start),
              "generator_iteration": meta.get("iteration"), "seed": seed, "round": rnd.index,
              "impressions": cfg.impressions, "command": rnd.run.command},
    )
    observed = clicks.float() / cfg.impressions
    tracker.metrics({"collect/data/true_pir_mean": float(true_pir.mean()),
                     "collect/data/true_pir_sd": float(true_pir.std()),
                     "collect/data/observed_pir_mean": float(observed.mean()),
                     "collect/data/observed_pir_sd": float(observed.std())}, step=0)
    tracker.table("collect/images", ["image_id", "image", "class", "true_pir", "observed_pir"],
                  [[i, rnd.pir_data / IMAGES / f"{i}.png", int(c), float(t), float(o)]
                   for i, c, t, o in zip(ids, classes, true_pir, observed, strict=True)],
                  image_columns=["image"])
    tracker.artifact(rnd.pir_data, "pir-dataset", inputs=[rnd.start],
                     metadata={"objective": objective.name, "round": rnd.index,
                               "images": cfg.num_images, "impressions": cfg.impressions})
    log.info("collect: %d images scored by %s: true PIR %.3f ± %.3f, observed %.3f ± %.3f -> %s",
             len(images), objective.name, true_pir.mean(), true_pir.std(), observed.mean(),
             observed.std(), rnd.pir_data)
