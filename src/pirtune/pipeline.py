"""The stages of pirtune as functions over a run directory.

Every stage reads its inputs from, and writes its outputs to, ``cfg.run_dir``
(or a named checkpoint), so a stage can be re-run or resumed alone:

* ``pretrain`` — train the ACGAN on ``data``; Lightning checkpoints go to
  ``checkpoints/`` (``last.ckpt`` and periodic ones), sample grids to
  ``samples/``, and the finished networks to ``generator.pt`` (a bundle, see
  ``pirtune.models.acgan``). Running it again resumes from ``last.ckpt``;
  once ``generator.pt`` exists the stage is done and is skipped.
* ``sample`` — draw a class-by-class grid from ``generator_ckpt`` into
  ``samples.png``.

The PIR loop (``loop``, the default stage) runs, for each of ``iterations``
rounds, these four stages and then writes ``report.md`` (``pirtune.report``):

* ``collect`` — draw ``collect.num_images`` images (uniform classes) from the
  round's generator, score them with the objective (the true PIR), show each
  ``collect.impressions`` times to simulated users (clicks ~ Binomial) and
  write the PIR dataset ``pir_data/`` (see ``pirtune.data.pir_dataset``).
* ``estimate`` — fit the PIR estimator on every PIR dataset of the run so far
  (cross-entropy over 100 PIR bins at temperature 1, C.3), checkpointing to
  ``estimator_ckpt/``; write ``estimator.pt`` and, for the held-out images
  scored by the frozen estimator at ``estimator.temperature``,
  ``estimator_report.json``.
* ``tune`` — tune the round's generator and discriminator against the frozen
  estimator (``PIRTuningModule``, section 2.4), checkpointing to
  ``tune_ckpt/``; write ``tuned.pt`` (a generator bundle) and, through
  ``EvaluationCallback``, ``evaluation.json``.
* ``evaluate`` — compare ``tuned.pt`` with ``generator_ckpt`` on fresh samples
  (section 4: ΔPIR, Cohen's d, Welch's t at α = 0.001, introspection); skipped
  when tuning already wrote ``evaluation.json``.

Round 1 starts from ``generator_ckpt`` and lives in the run directory itself;
round r > 1 (the paper's iteration, A.3) lives in ``round<r>/``: it collects
samples from round r−1's tuned generator, re-trains the estimator on those
and every earlier round's samples, tunes round r−1's networks further, and is
evaluated against ``generator_ckpt`` again, so its effect size is the total
one. Every stage skips what is done and resumes what is half done, so running
the same command after an interruption finishes the run. ``stage=<name>
round=<r>`` runs one stage of one round.

The PIR-loop stages (``LOOP_STAGES``) of one objective share the run
directory ``runs/<scale>-<objective name>``. With ``data=interactions``
(``conf/data/interactions.yaml``) only ``estimate`` runs, on what people
picked in the web app, in ``runs/<scale>-interactions``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import platform
import sqlite3
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from pirtune.data.impressions import simulate_clicks
from pirtune.data.pir_dataset import PIRDataModule, read_pir_datasets, write_pir_dataset
from pirtune.errors import UsageError
from pirtune.estimator.module import (
    FrozenPIREstimator,
    PIREstimatorModule,
    evaluate_estimator,
    load_estimator,
    save_estimator,
)
from pirtune.evaluation import (
    EVALUATION_NAME,
    Evaluation,
    EvaluationCallback,
    TrainingSet,
    evaluate_generators,
    log_evaluation,
    score,
    write_evaluation,
)
from pirtune.models.acgan import (
    STEPS_PER_ITERATION,
    ACGANModule,
    SampleGridCallback,
    class_grid,
    load_bundle,
    render,
    save_bundle,
)
from pirtune.models.tuning import PIRTuningModule
from pirtune.objectives import build_objective
from pirtune.report import write_report
from pirtune.webapp import InteractionLog, export_pir_dataset

log = logging.getLogger(__name__)

# Checkpoints taken after the optimiser steps are what resuming needs, and the
# pytree notice is Lightning's own; neither is actionable for a user.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
# The frozen PIR estimator stays in eval mode inside the tuning module on purpose.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
# A GAN stage resumed mid-epoch draws a fresh shuffle of the scenes, which is harmless.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before")

BUNDLE_NAME = "generator.pt"
ESTIMATOR_NAME = "estimator.pt"
TUNED_NAME = "tuned.pt"
LOOP_STAGES = ("loop", "collect", "estimate", "tune", "evaluate")
INTERACTIONS = "interactions"  # data.kind of conf/data/interactions.yaml


@dataclass(frozen=True)
class Round:
    """Where one round of the PIR loop reads and writes (see the module docstring).

    Attributes:
        index: 1 for the first round.
        dir: the run directory (round 1) or ``<run_dir>/round<index>``.
        start: the generator bundle the round collects from and tunes.
        baseline: the generator before any tuning, which evaluations compare with.
        pir_data: the PIR dataset the round collects.
        datasets: every round's PIR dataset up to this one: the estimator's data.
    """

    index: int
    dir: Path
    start: Path
    baseline: Path
    pir_data: Path
    datasets: tuple[Path, ...]


def rounds(cfg: DictConfig, count: int | None = None) -> list[Round]:
    """The first ``count`` rounds (default ``cfg.iterations``) of the run."""
    count = cfg.iterations if count is None else count
    if count < 1:
        raise UsageError(f"iterations={count} must be at least 1")
    run_dir, baseline = Path(cfg.run_dir), Path(cfg.generator_ckpt)
    found: list[Round] = []
    for index in range(1, count + 1):
        if index == 1:
            found.append(Round(1, run_dir, baseline, baseline, Path(cfg.pir_data),
                               (Path(cfg.pir_data),)))
            continue
        here, previous = run_dir / f"round{index}", found[-1]
        found.append(Round(index, here, previous.dir / TUNED_NAME, baseline, here / "pir_data",
                           (*previous.datasets, here / "pir_data")))
    return found


def _round(cfg: DictConfig, rnd: Round | None) -> Round:
    """``rnd``, or for a single stage the round ``cfg.round`` names."""
    if rnd is not None:
        return rnd
    if cfg.round < 1:
        raise UsageError(f"round={cfg.round} must be at least 1")
    return rounds(cfg, cfg.round)[-1]


def _command_line() -> str:
    """The command that reproduces this run (Hydra's overrides, or argv outside Hydra)."""
    if HydraConfig.initialized():
        return " ".join(["pirtune-train", *HydraConfig.get().overrides.task])
    return " ".join(["pirtune-train", *sys.argv[1:]])


def _rank_zero() -> bool:
    """False in the extra processes DDP launches (they re-run the command line)."""
    return rank_zero_only.rank == 0


def _barrier() -> None:
    """Under DDP, wait until every process gets here (rank 0 has written its files)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _already_done(stage: str, output: Path) -> bool:
    """True (and says so) when a stage's final output exists: the stage is skipped."""
    if output.exists():
        log.info("%s: already done (%s); delete it to run the stage again", stage, output)
        return True
    return False


def _require_positive(cfg: DictConfig, section: str, keys: tuple[str, ...]) -> None:
    """Refuse counts below one, naming the setting."""
    for key in keys:
        if cfg[section][key] < 1:
            raise UsageError(f"{section}.{key}={cfg[section][key]} must be at least 1")


def _loggers(cfg: DictConfig) -> list:
    """The configured loggers (CSV, W&B, ...)."""
    return [instantiate(spec) for spec in (cfg.get("logger") or {}).values()]


def _trainer(cfg: DictConfig, callbacks: list[L.Callback], **limits) -> L.Trainer:
    """The configured Trainer with the stage's callbacks, loggers and progress bar."""
    if cfg.progress:
        callbacks = [*callbacks, RichProgressBar()]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=_loggers(cfg),
                       enable_progress_bar=bool(cfg.progress), **limits)


def _resume_path(stage: str, checkpoints: Path, explicit: str | None = None) -> str | None:
    """The checkpoint a stage resumes from: ``explicit``, else its own last.ckpt if any."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise UsageError(f"ckpt_path {explicit} does not exist; give a .ckpt from a "
                             "run's checkpoints/ folder, or leave it unset")
        return explicit
    last = checkpoints / "last.ckpt"
    if last.is_file():
        log.info("%s: resuming from %s", stage, last)
        return str(last)
    return None


def pretrain(cfg: DictConfig) -> Path:
    """Train the ACGAN and write ``<run_dir>/generator.pt``; return its path."""
    run_dir = Path(cfg.run_dir)
    bundle_path = run_dir / BUNDLE_NAME
    if cfg.ckpt_path is None and _already_done("pretrain", bundle_path):
        return bundle_path
    _require_positive(cfg, "pretrain", ("iterations", "checkpoint_every", "sample_every"))
    settings = cfg.pretrain

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")  # a bad folder fails here, before any training output
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module: ACGANModule = instantiate(cfg.model)
    checkpoints = run_dir / "checkpoints"
    callbacks: list[L.Callback] = [
        # Periodic checkpoints are all kept, and last.ckpt beside them for resuming.
        ModelCheckpoint(dirpath=checkpoints, filename="{step}", save_top_k=-1, save_last=True,
                        every_n_train_steps=STEPS_PER_ITERATION * settings.checkpoint_every),
        SampleGridCallback(run_dir / "samples", settings.sample_every, settings.sample_per_class,
                           seed=cfg.seed),
    ]
    ckpt_path = _resume_path("pretrain", checkpoints, cfg.ckpt_path)
    trainer = _trainer(cfg, callbacks, max_steps=STEPS_PER_ITERATION * settings.iterations)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    if trainer.is_global_zero:
        digest = save_bundle(
            module, cfg.model, bundle_path,
            command=_command_line(),
            seed=cfg.seed,
            iterations=module.iteration,
            data=OmegaConf.to_container(cfg.data, resolve=True),
            torch=torch.__version__,
            python=platform.python_version(),
        )
        log.info("pretrain: wrote %s (sha256 %s) after %d iterations", bundle_path, digest,
                 module.iteration)
    return bundle_path


def sample(cfg: DictConfig) -> Path:
    """Write a class-by-class sample grid of ``generator_ckpt`` to ``<run_dir>/samples.png``."""
    generator, _, meta = load_bundle(cfg.generator_ckpt)
    images = class_grid(generator, cfg.sample.per_class, seed=cfg.sample.seed)
    out = Path(cfg.run_dir) / "samples.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, out, nrow=8, padding=1)
    log.info("sample: %s (generator %s after %d iterations; one class after another)", out,
             cfg.generator_ckpt, meta.get("iteration", -1))
    print(f"samples written to {out}")
    return out


def collect(cfg: DictConfig, rnd: Round | None = None) -> Path:
    """Score samples of the round's generator with simulated users; write its PIR dataset."""
    rnd = _round(cfg, rnd)
    out = rnd.pir_data
    if _rank_zero() and not _already_done("collect", out / "pir.csv"):
        _collect(cfg, rnd)
    _barrier()  # under DDP, only rank 0 collects
    return out


def _collect(cfg: DictConfig, rnd: Round) -> None:
    """Draw the round's images, score them, simulate clicks; write the PIR dataset."""
    out = rnd.pir_data
    _require_positive(cfg, "collect", ("num_images", "impressions", "batch_size"))
    settings = cfg.collect
    seed = settings.seed + 2 * (rnd.index - 1)  # fresh latents and clicks every round
    objective = build_objective(cfg.objective)
    generator, _, meta = load_bundle(rnd.start)
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(settings.num_images, generator.latent_dim, generator=rng)
    classes = torch.randint(generator.num_classes, (settings.num_images,), generator=rng)
    images = render(generator, z, classes, settings.batch_size)
    true_pir = score(objective, images, settings.batch_size)
    clicks = simulate_clicks(true_pir, settings.impressions,
                             torch.Generator().manual_seed(seed + 1))
    write_pir_dataset(
        out, (images * 255).round().to(torch.uint8), classes, settings.impressions, clicks,
        true_pir=true_pir, latents=z,
        # Ids carry the round, so the rounds' datasets join without clashes.
        image_ids=[f"r{rnd.index}_{i:06d}" for i in range(settings.num_images)],
        meta={"objective": objective.describe(), "generator_ckpt": str(rnd.start),
              "generator_iteration": meta.get("iteration"), "seed": seed, "round": rnd.index,
              "impressions": settings.impressions, "command": _command_line()},
    )
    observed = clicks.float() / settings.impressions
    log.info("collect: %d images scored by %s: true PIR %.3f ± %.3f, observed %.3f ± %.3f -> %s",
             len(images), objective.name, true_pir.mean(), true_pir.std(), observed.mean(),
             observed.std(), out)


def estimate(cfg: DictConfig, rnd: Round | None = None) -> Path:
    """Fit the PIR estimator on the round's datasets; write ``estimator.pt`` and its report.

    Round 1 learns from ``cfg.pir_data``, or with data=interactions from the web
    app's picks; later rounds re-train from scratch on every round's samples
    (the paper continued training instead, A.3).
    """
    rnd = _round(cfg, rnd)
    out = rnd.dir / ESTIMATOR_NAME
    if _already_done("estimate", out):
        return out
    if cfg.data.get("kind") == INTERACTIONS:
        rnd = _interactions_round(cfg, rnd)
    _require_positive(cfg, "estimator", ("epochs", "batch_size"))
    settings = cfg.estimator
    for dataset in rnd.datasets:
        if not (dataset / "pir.csv").is_file():
            raise UsageError(f"no PIR dataset at {dataset}; run stage=collect first, or "
                             "give pir_data=<dataset folder>")
    datamodule = PIRDataModule([str(d) for d in rnd.datasets], settings.val_fraction,
                               settings.batch_size, seed=cfg.seed)
    datamodule.setup("fit")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = PIREstimatorModule(instantiate(settings.network), instantiate(settings.optimizer))
    checkpoints = rnd.dir / "estimator_ckpt"
    ckpt_path = _resume_path("estimate", checkpoints)
    trainer = _trainer(cfg, [ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=0)],
                       max_epochs=settings.epochs)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if trainer.is_global_zero:
        _save_estimator(settings, module, datamodule, out)
    _barrier()
    return out


def _interactions_round(cfg: DictConfig, rnd: Round) -> Round:
    """``rnd`` learning from the web app's picks at ``data.path`` (data=interactions).

    A folder pirtune-export wrote is used as is; an interaction log is exported
    into the round's ``pir_data``, its images rendered by ``generator_ckpt``,
    unless an earlier run of the stage already exported it.
    """
    path = Path(cfg.data.path)
    if rnd.index > 1:
        raise UsageError(f"round={rnd.index}: data=interactions has one round; leave round=1")
    if (path / "pir.csv").is_file():
        log.info("estimate: learning from the exported interactions %s", path)
        return dataclasses.replace(rnd, pir_data=path, datasets=(path,))
    if not path.is_file():
        raise UsageError(f"data.path={path} is neither an interaction log nor an exported PIR "
                         "dataset; give the .db pirtune-serve wrote or the folder "
                         "pirtune-export wrote")
    if (rnd.pir_data / "pir.csv").is_file():
        log.info("estimate: %s was exported to %s already", path, rnd.pir_data)
    elif _rank_zero():
        generator, _, _ = load_bundle(cfg.generator_ckpt)
        try:
            interactions = InteractionLog(path)
        except sqlite3.DatabaseError as err:
            raise UsageError(f"data.path={path} is not an interaction log ({err}); give the "
                             ".db pirtune-serve wrote") from err
        with contextlib.closing(interactions):
            export_pir_dataset(interactions, rnd.pir_data, generator)
        log.info("estimate: exported %s to %s (images by %s)", path, rnd.pir_data,
                 cfg.generator_ckpt)
    _barrier()  # under DDP, only rank 0 exports
    return rnd


def _save_estimator(settings: DictConfig, module: PIREstimatorModule,
                    datamodule: PIRDataModule, out: Path) -> None:
    """Score the held-out images with the frozen estimator; write it and its report."""
    held_out = datamodule.val_records if len(datamodule.val_records) else datamodule.records
    report = evaluate_estimator(module.cpu(), held_out, temperature=settings.temperature)
    for warning in report.warnings:
        log.warning("estimate: %s", warning)
    (out.parent / "estimator_report.json").write_text(
        json.dumps(dataclasses.asdict(report), indent=2) + "\n")
    save_estimator(module, OmegaConf.to_container(settings.network, resolve=True),
                   settings.temperature, out, report=dataclasses.asdict(report))
    log.info("estimate: %s on %d held-out images: MAE %.4f, Spearman %.3f (observed), %s (true); "
             "zero share %.2f -> %s", settings.network.backbone, report.n, report.mae,
             report.spearman_observed,
             "n/a" if report.spearman_true is None else f"{report.spearman_true:.3f}",
             report.zero_share, out)


def _evaluate(cfg: DictConfig, rnd: Round, estimator: FrozenPIREstimator,
              tuned: torch.nn.Module) -> Evaluation:
    """Evaluate ``tuned`` against the run's baseline generator, on its device."""
    device = next(tuned.parameters()).device
    before, _, _ = load_bundle(rnd.baseline)
    objective = build_objective(cfg.objective)
    training_set = TrainingSet.of(read_pir_datasets(rnd.datasets), estimator.bins)
    settings = cfg.evaluate
    evaluation = evaluate_generators(
        before.to(device), tuned, objective.to(device), estimator.to(device),
        training_set, rnd.dir,
        record={
            "objective": objective.describe(), "round": rnd.index, "scale": cfg.scale,
            "estimator_backbone": cfg.estimator.network.backbone,
            "generator_before": str(rnd.baseline), "generator_after": str(rnd.dir / TUNED_NAME),
            "tuning": {**OmegaConf.to_container(cfg.tune, resolve=True),
                       "tuned_from": str(rnd.start)},
        },
        num_samples=settings.num_samples, seed=settings.seed, batch_size=settings.batch_size,
        alpha=settings.alpha,
    )
    change = evaluation.change
    log.info("evaluate: round %d of %s: mean PIR %.4f -> %.4f (Δ %+.4f, estimated %+.4f), "
             "d %.2f, Welch t %.2f (df %.0f), p %.2g: %s at α=%g", rnd.index, objective.name,
             change.mean_before, change.mean_after, change.delta, evaluation.predicted.delta,
             change.cohens_d, change.welch.t, change.welch.df, change.welch.p,
             "significant" if change.significant else "not significant", change.alpha)
    return evaluation


def tune(cfg: DictConfig, rnd: Round | None = None) -> Path:
    """Tune the round's generator against its frozen estimator; write ``tuned.pt``.

    The discriminator keeps training on ``data`` as in pre-training. When tuning
    ends, ``EvaluationCallback`` evaluates the tuned generator (``evaluation.json``).
    """
    rnd = _round(cfg, rnd)
    out = rnd.dir / TUNED_NAME
    if _already_done("tune", out):
        return out
    _require_positive(cfg, "tune", ("steps", "checkpoint_every"))
    settings = cfg.tune
    estimator = load_estimator(rnd.dir / ESTIMATOR_NAME)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    L.seed_everything(cfg.seed + rnd.index, workers=True, verbose=False)
    module, meta = PIRTuningModule.from_bundle(
        rnd.start, estimator, settings.lr, w_pir=settings.w_pir, ema_decay=settings.ema_decay,
        compile_mode=cfg.model.compile_mode)
    checkpoints = rnd.dir / "tune_ckpt"
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=0,
                        every_n_train_steps=STEPS_PER_ITERATION * settings.checkpoint_every),
        EvaluationCallback(functools.partial(_evaluate, cfg, rnd, estimator),
                           rnd.dir / EVALUATION_NAME),
    ]
    trainer = _trainer(cfg, callbacks, max_steps=STEPS_PER_ITERATION * settings.steps)
    trainer.fit(module, datamodule=datamodule, ckpt_path=_resume_path("tune", checkpoints))
    if trainer.is_global_zero and not trainer.interrupted:
        digest = save_bundle(module, OmegaConf.create(meta["model"]), out,
                             command=_command_line(), seed=cfg.seed, round=rnd.index,
                             tuned_from=str(rnd.start), estimator=str(rnd.dir / ESTIMATOR_NAME),
                             tuning=OmegaConf.to_container(settings, resolve=True),
                             torch=torch.__version__, python=platform.python_version())
        log.info("tune: wrote %s (sha256 %s) after %d steps", out, digest, module.iteration)
    _barrier()
    return out


def evaluate(cfg: DictConfig, rnd: Round | None = None) -> Path:
    """Write the round's ``evaluation.json`` unless tuning already did; log it."""
    rnd = _round(cfg, rnd)
    out = rnd.dir / EVALUATION_NAME
    if not _rank_zero() or _already_done("evaluate", out):
        return out  # under DDP, rank 0 evaluates once tuning has ended
    tuned = rnd.dir / TUNED_NAME
    if not tuned.is_file():
        raise UsageError(f"no tuned generator at {tuned}; run stage=tune first")
    evaluation = _evaluate(cfg, rnd, load_estimator(rnd.dir / ESTIMATOR_NAME),
                           load_bundle(tuned)[0])
    write_evaluation(evaluation, out)
    log_evaluation(_loggers(cfg), evaluation, step=0)
    return out


def loop(cfg: DictConfig) -> Path:
    """Every round's collect → estimate → tune → evaluate, then the run's report."""
    for rnd in rounds(cfg):
        for stage in (collect, estimate, tune, evaluate):
            stage(cfg, rnd)
    report = Path(cfg.run_dir) / "report.md"
    if not _rank_zero():
        return report
    report = write_report(cfg.run_dir)
    print(f"report written to {report}")
    return report


STAGES: dict[str, Callable[[DictConfig], Path]] = {
    "loop": loop, "pretrain": pretrain, "sample": sample, "collect": collect,
    "estimate": estimate, "tune": tune, "evaluate": evaluate}


def _link_sweep_job(cfg: DictConfig) -> None:
    """In a multirun, link the job's output folder to its run (the sweep report follows it)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    link = Path(HydraConfig.get().runtime.output_dir) / "run"
    with contextlib.suppress(FileExistsError):  # a re-run, or another DDP process, made it
        link.symlink_to(Path(cfg.run_dir).resolve(), target_is_directory=True)


def run(cfg: DictConfig) -> Path:
    """Run ``cfg.stage`` on ``cfg.run_dir``."""
    if cfg.stage not in STAGES:
        raise UsageError(f"stage '{cfg.stage}' is unknown; choose one of: {', '.join(STAGES)}")
    if cfg.data.get("kind") == INTERACTIONS and cfg.stage != "estimate":
        raise UsageError(f"data=interactions feeds stage=estimate only; run stage={cfg.stage} "
                         "with data=landscapes or data=imagefolder")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UsageError(f"{missing[0]} must be set; add {missing[0]}=<value> to the command")
    if cfg.stage in LOOP_STAGES:
        _link_sweep_job(cfg)
    return STAGES[cfg.stage](cfg)
