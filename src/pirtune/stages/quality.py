"""Stage ``quality``: a generator's samples against the real images it learned from.

Draws two disjoint real sets of ``samples`` images from ``data`` (the
procedural scenes or the ImageFolder in ``data.root``) and ``samples``
generated images (seeded latents, the classes of the second real set), and
scores the generated set and the second real set (the real-vs-real floor)
against the first with ``pirtune.metrics``: FID, KID mean ± SD, precision,
recall, density, coverage and class accuracy per class.

With a true objective (``quality.objective``; none on real people's
interactions), the generated set is also scored against the tilted real set
(``pirtune.metrics.tilted``): the pool is both real sets (2 × ``samples``
images, so it holds twice the generated set), weighted ∝ exp(β·PIR) by their
true PIRs so that their mean is the generated set's, and ``samples`` images
are resampled from it, the generated set's size, so FID's small-sample bias
matches the untilted figure's. Where the tilt would keep fewer effective
images than ``quality.tilt_ess_floor``, the record says so instead.

``quality.json`` (``pirtune.metrics.record``) keeps the figures with the
features and sample counts; they are logged as
``quality/{generated,floor,tilted}/<figure>`` and printed as a table. The loop
scores its generator before tuning (``quality_base.json``) and each round's
tuned generator (the round's ``quality.json``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from pirtune.errors import UsageError
from pirtune.metrics import TiltedQuality, TiltError, compare, extract, feature_network
from pirtune.metrics import tilted_quality as tilted_figures
from pirtune.metrics.quality import cell_rows
from pirtune.metrics.real import class_names, class_reader, draw
from pirtune.metrics.record import (
    BASE_QUALITY_NAME,
    FLOOR,
    GENERATED,
    QUALITY_NAME,
    TILTED,
    QualityRecord,
    read_quality,
    write_quality,
)
from pirtune.models.bundle import draw_latents, load_sampler, render
from pirtune.objectives import build_objective
from pirtune.objectives import score as true_pir
from pirtune.stages.config import QualityConfig
from pirtune.stages.rundir import Round, Run, begin_stage
from pirtune.stages.tracking import StageTracker, parameter_counts, track
from pirtune.stages.training import rank_zero

log = logging.getLogger(__name__)


def quality(cfg: QualityConfig, run: Run) -> Path:
    """Score ``cfg.generator`` into ``<run dir>/quality.json`` (unless done); return its path."""
    return score(cfg, run, Path(cfg.generator), run.dir / QUALITY_NAME)


def base_quality(cfg: QualityConfig, run: Run, generator: str | Path) -> Path:
    """The loop's generator before tuning, in ``<run dir>/quality_base.json``."""
    return score(cfg, run, Path(generator), run.dir / BASE_QUALITY_NAME, round_index=0)


def round_quality(cfg: QualityConfig, rnd: Round) -> Path:
    """The round's tuned generator, in the round's ``quality.json``."""
    if not rnd.tuned.is_file():
        raise UsageError(f"no tuned generator at {rnd.tuned}; run stage=tune first")
    return score(cfg, rnd.run, rnd.tuned, rnd.dir / QUALITY_NAME, rnd, rnd.index)


def score(cfg: QualityConfig, run: Run, generator: Path, out: Path, rnd: Round | None = None,
          round_index: int | None = None) -> Path:
    """Write ``out`` for ``generator`` (unless done with this config), print its table.

    The record is named after ``out`` (``quality``, ``quality_base``), so the
    loop's two files in one folder each keep their own.
    """
    if not rank_zero():  # under DDP, rank 0 scores once tuning has ended
        return out
    record = begin_stage(out.stem, out.parent, {**cfg.fingerprint(), "generator": str(generator)},
                         out)
    if record is not None:
        with track(run, "quality", rnd, record) as tracker:
            result = _score(cfg, generator, round_index, tracker)
            write_quality(result, out)
            _log(result, tracker, step=round_index or 0)
    result = read_quality(out)
    print(f"\nquality of {generator} ({result.samples[GENERATED]} samples against "
          f"{result.samples['real']} real images, {cfg.features.value} features, k = {cfg.k}):")
    print("\n".join(result.table()))
    print(f"written to {out}")
    return out


def kid_subset_size(samples: int) -> int:
    """KID's subsets: half of each set, at most torchmetrics' 1000, so their SD says
    something (subsets of the whole set would all be the same)."""
    return max(2, min(1000, samples // 2))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _score(cfg: QualityConfig, path: Path, round_index: int | None,
           tracker: StageTracker) -> QualityRecord:
    device = _device(cfg.device)
    network = feature_network(cfg.features.value).to(device)
    generator, meta = load_sampler(path)
    tracker.config(parameter_counts(generator=generator))

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    dataset = datamodule.train_set
    if len(dataset) < 2 * cfg.samples:
        raise UsageError(
            f"data holds {len(dataset)} images, but quality.samples={cfg.samples} draws two "
            f"disjoint real sets of {cfg.samples}; set quality.samples={len(dataset) // 2} or "
            "fewer (procedural scenes: or raise data.num_images)")
    real, labels = draw(dataset, 2 * cfg.samples, cfg.seed)
    reference, other, other_labels = real[:cfg.samples], real[cfg.samples:], labels[cfg.samples:]
    if generator.resolution != real.shape[-1]:
        raise UsageError(f"{path} draws {generator.resolution} px images, but the real images "
                         f"are {real.shape[-1]} px; set data.resolution={generator.resolution}")
    classes = class_names(dataset)
    conditional = generator.num_classes == len(classes)
    # Drawn in the real set's class proportions, so a class mix is no figure's excuse.
    wanted = other_labels if conditional else torch.zeros_like(other_labels)
    z = draw_latents(generator, wanted, torch.Generator().manual_seed(cfg.seed))
    samples = render(generator.to(device), z, wanted, cfg.batch_size).cpu()

    reader = class_reader(classes)
    reader = reader.to(device) if reader is not None else None
    scores = compare(reference, {GENERATED: (samples, other_labels if conditional else None),
                                 FLOOR: (other, other_labels)},
                     network, cfg.k, reader, cfg.kid_subsets, cfg.seed, cfg.batch_size,
                     kid_subset_size(cfg.samples))
    feature_dim = int(extract(network, reference[:2]).shape[1])
    objective, note = _objective(cfg, device)
    tilted = None
    if objective is not None:
        tilted, note = _tilted(cfg, objective, network, real, samples, device)
    return QualityRecord(
        generator=str(path), generated=scores[GENERATED], floor=scores[FLOOR], classes=classes,
        features={"name": cfg.features.value, "dim": feature_dim},
        samples={GENERATED: cfg.samples, "real": cfg.samples, FLOOR: cfg.samples},
        settings={"k": cfg.k, "kid_subsets": cfg.kid_subsets,
                  "kid_subset_size": kid_subset_size(cfg.samples), "seed": cfg.seed,
                  "data": {"root": cfg.data.get("root"), "resolution": int(real.shape[-1]),
                           "images": len(dataset)},
                  "generator_iteration": meta.get("iteration"),
                  "objective": None if objective is None else objective.name,
                  "tilt_ess_floor": cfg.tilt_ess_floor},
        round=round_index, tilted=tilted, tilted_note=note)


def _objective(cfg: QualityConfig,
               device: torch.device) -> tuple[nn.Module | None, str | None]:
    """The true objective the real images are tilted by, on ``device``, or ``None`` and why."""
    if not cfg.use_objective:
        return None, ("no true objective scores the real images: the PIR data are real "
                      "people's picks (data=interactions without data.hidden_objective)")
    if cfg.objective is None:
        return None, "no true objective scores the real images (quality.objective=null)"
    return build_objective(cfg.objective).to(device), None


def _tilted(cfg: QualityConfig, objective: nn.Module, network: nn.Module, real: torch.Tensor,
            samples: torch.Tensor,
            device: torch.device) -> tuple[TiltedQuality | None, str | None]:
    """The generated ``samples`` against both ``real`` sets tilted to their mean true PIR,
    or ``None`` and the refusal's sentence (the stage goes on without them)."""
    def pir(images: torch.Tensor) -> torch.Tensor:                      # [N] in [0, 1]
        return true_pir(lambda batch: objective(batch.to(device)), images, cfg.batch_size)

    try:
        return tilted_figures(extract(network, real, cfg.batch_size), pir(real),
                              extract(network, samples, cfg.batch_size),
                              float(pir(samples).double().mean()), k=cfg.k, seed=cfg.seed,
                              ess_floor=cfg.tilt_ess_floor), None
    except TiltError as refusal:
        log.warning("quality: no tilted real set: %s", refusal)
        return None, str(refusal)


def _log(result: QualityRecord, tracker: StageTracker, step: int) -> None:
    values = {}
    for name, q in ((GENERATED, result.generated), (FLOOR, result.floor)):
        figures = q.as_dict(result.classes)
        accuracy = figures.pop("class_accuracy") or {}
        values |= {f"quality/{name}/{key}": value for key, value in figures.items()}
        values |= {f"quality/{name}/class_accuracy_{c}": a for c, a in accuracy.items()}
    if result.tilted is not None:
        values |= {f"quality/{TILTED}/{key}": value
                   for key, value in result.tilted.as_dict().items()}
    tracker.metrics(values, step=step)
    columns = result.cells()
    tracker.table("quality/figures", ["figure", *columns], cell_rows(columns))
    generated, floor, tilted = result.generated, result.floor, result.tilted
    log.info("quality: %s: FID %.3f (floor %.3f), precision %.3f (%.3f), recall %.3f (%.3f); %s",
             result.generator, generated.fid, floor.fid, generated.precision, floor.precision,
             generated.recall, floor.recall,
             f"against the tilted real set (ESS {tilted.ess:.0f}, "
             f"{100 * tilted.ess_share:.1f} %): FID {tilted.fid:.3f}, precision "
             f"{tilted.precision:.3f}, recall {tilted.recall:.3f}" if tilted is not None
             else f"no tilted real set: {result.tilted_note}")
