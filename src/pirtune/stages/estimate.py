"""Stage ``estimate``: fit the PIR estimator on the round's PIR datasets (2.3, C.3).

Cross-entropy over 100 PIR bins at temperature 1, checkpointing to
``estimator_ckpt/``; writes ``estimator.pt`` and, for the held-out images
scored by the frozen estimator at ``estimator.temperature``,
``estimator_report.json``. With ``estimator.members`` = K > 1 it trains K
members, member m with seed + m on bootstrap resample m of the training
split, and saves them as one ensemble (``pirtune.estimator.ensemble``).
Round 1 learns from ``pir_data``, or with
``data=interactions`` from the web app's picks; later rounds re-train from
scratch on every round's samples (the paper continued training instead, A.3).
W&B gets a table of every image with its estimated PIR beside the observed
and true ones, and the estimator as an artifact made from the PIR datasets.

With ``estimator.loss=choice`` (the default of ``data=interactions``) it fits
the choice model of ``pirtune.estimator.choice`` instead: Plackett–Luce over
the log's answered rounds, sessions split into training and held-out ones;
the report is its held-out pick accuracy and its calibration: a temperature
fitted on the held-out people (``pirtune.estimator.calibration``), kept in the
saved model, with the expected calibration error before and after. With
``estimator.patience`` > 0 (data=interactions: 5) training stops once the NLL
on a share (``val_fraction``) of the *training* people has not improved for that
many epochs, and the best epoch's weights are kept: a fixed epoch count trains
a larger log for more steps, and the choice model overfit (crowd benchmark:
held-out NLL lowest at epoch 6 of 20 on 1,000 picks, pick accuracy falling
from 0.44 at 250 picks to 0.375 at 1,000). The file names the generators whose
images the picks were of (``generators``: their bundles' SHA-256), which
``pirtune-serve --prior`` checks against the generator it serves.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import re
import sqlite3
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from pirtune.data.datamodules import PIRDataModule
from pirtune.errors import UsageError
from pirtune.estimator.calibration import calibrate
from pirtune.estimator.choice import (
    ROUNDS_NAME,
    choice_report,
    fit_choice_model,
    read_choice_rounds,
    round_scores,
)
from pirtune.estimator.ensemble import FrozenPIREnsemble
from pirtune.estimator.files import save_choice_model, save_estimator
from pirtune.estimator.frozen import FrozenPIREstimator, estimate_pir
from pirtune.estimator.module import PIREstimatorModule
from pirtune.estimator.report import evaluate_estimator
from pirtune.files import write_json
from pirtune.models.bundle import load_sampler
from pirtune.stages.config import EstimateConfig
from pirtune.stages.rundir import Round, begin_stage
from pirtune.stages.tracking import StageTracker, parameter_counts, track
from pirtune.stages.training import barrier, rank_zero, resume_path, trainer
from pirtune.webapp import InteractionLog, export_pir_dataset
from pirtune.webapp.export import find_generators

log = logging.getLogger(__name__)

REPORT_NAME = "estimator_report.json"


def estimate(cfg: EstimateConfig, rnd: Round) -> Path:
    """Write the round's ``estimator.pt`` and its report (unless done); return its path."""
    out = rnd.estimator
    choice = cfg.estimator.loss == "choice"
    if choice and cfg.interactions is None:
        raise UsageError("estimator.loss=choice learns from the web app's picks; add "
                         "data=interactions data.path=<the .db pirtune-serve wrote>, or use "
                         "estimator.loss=bins")
    if cfg.interactions is not None:
        rnd = _interactions_round(cfg.interactions, rnd)
    checkpoints = rnd.dir / "estimator_ckpt"
    record = begin_stage("estimate", rnd.dir,
                         {**cfg.fingerprint(), "datasets": [str(d) for d in rnd.datasets]},
                         out, own=(checkpoints,), extendable=("estimator.epochs",))
    if record is None:
        return out
    if cfg.interactions is not None and rnd.pir_data != Path(cfg.interactions):
        if (rnd.pir_data / "pir.csv").is_file():
            log.info("estimate: %s was exported to %s already", cfg.interactions, rnd.pir_data)
        else:
            _export(Path(cfg.interactions), rnd.pir_data, [cfg.generator, *cfg.generators])
    for dataset in rnd.datasets:
        if not (dataset / "pir.csv").is_file():
            raise UsageError(f"no PIR dataset at {dataset}; run stage=collect first, or "
                             "give pir_data=<dataset folder>")
    if choice:
        with track(rnd.run, "estimate", rnd, record) as tracker:
            _fit_choice(cfg, rnd, checkpoints, out, tracker)
        barrier()
        return out
    settings = cfg.estimator
    modules: list[PIREstimatorModule] = []
    with track(rnd.run, "estimate", rnd, record) as tracker:
        for member in range(settings.members):
            datamodule, module = _fit_member(cfg, rnd, member, checkpoints, tracker)
            modules.append(module)
        if rank_zero():
            _save(cfg, modules, datamodule, out, tracker, rnd)
    barrier()
    return out


def _fit_member(cfg: EstimateConfig, rnd: Round, member: int, checkpoints: Path,
                tracker: StageTracker) -> tuple[PIRDataModule, PIREstimatorModule]:
    """Train one estimator; with ``members`` > 1, member m on bootstrap resample m (seed + m).

    A single estimator (the paper's) learns from the whole training split
    with ``seed``, exactly as before ensembles existed.
    """
    settings = cfg.estimator
    ensemble = settings.members > 1
    datamodule = PIRDataModule([str(d) for d in rnd.datasets], settings.val_fraction,
                               settings.batch_size, seed=cfg.seed,
                               impressions=settings.targets == "hl_gauss",
                               bootstrap=cfg.seed + member if ensemble else None)
    datamodule.setup("fit")
    L.seed_everything(cfg.seed + member, workers=True, verbose=False)
    module = PIREstimatorModule(instantiate(settings.network), instantiate(settings.optimizer),
                                targets=settings.targets)
    if member == 0:
        tracker.config(parameter_counts(estimator=module.network))
    folder = checkpoints / f"member{member}" if ensemble else checkpoints
    # Lightning writes last.ckpt at an epoch's end only beside a top-k checkpoint:
    # keep the newest epoch's (no monitor) and link last.ckpt to it, so a killed
    # estimate resumes from its last finished epoch rather than from scratch.
    fit = trainer(rnd.run, [ModelCheckpoint(dirpath=folder, save_last="link", save_top_k=1)],
                  tracker.loggers, max_epochs=settings.epochs)
    fit.fit(module, datamodule=datamodule, ckpt_path=resume_path("estimate", folder))
    if ensemble:
        log.info("estimate: member %d of %d trained on bootstrap resample %d", member + 1,
                 settings.members, cfg.seed + member)
    return datamodule, module


def _interactions_round(path: str, rnd: Round) -> Round:
    """``rnd`` learning from the web app's picks at ``path`` (data=interactions).

    A folder pirtune-export wrote is used as is; an interaction log is exported
    into the round's ``pir_data`` (``_export``).
    """
    source = Path(path)
    if rnd.index > 1:
        raise UsageError(f"round={rnd.index}: data=interactions has one round; leave round=1")
    if (source / "pir.csv").is_file():
        log.info("estimate: learning from the exported interactions %s", source)
        return dataclasses.replace(rnd, pir_data=source, datasets=(source,))
    if not source.is_file():
        raise UsageError(f"data.path={source} is neither an interaction log nor an exported PIR "
                         "dataset; give the .db pirtune-serve wrote or the folder "
                         "pirtune-export wrote")
    return rnd


def _export(db: Path, out: Path, generator_paths: list[str]) -> None:
    """Export the interaction log ``db`` to ``out``, each session's images rendered by the
    generator that served it (found by checksum among ``generator_paths``)."""
    if rank_zero():
        try:
            interactions = InteractionLog(db)
            sessions = interactions.generators()
        except sqlite3.DatabaseError as err:
            raise UsageError(f"data.path={db} is not an interaction log ({err}); give the "
                             ".db pirtune-serve wrote") from err
        with contextlib.closing(interactions):
            found = find_generators(interactions, generator_paths)
            samplers = {checksum: load_sampler(path)[0] for checksum, path in found.items()}
            export_pir_dataset(interactions, out, samplers)
        log.info("estimate: exported %s (%d sessions) to %s, images by %s", db, len(sessions),
                 out, ", ".join(sorted({str(p) for p in found.values()})))
    barrier()  # under DDP, only rank 0 exports


def _fit_choice(cfg: EstimateConfig, rnd: Round, checkpoints: Path, out: Path,
                tracker: StageTracker) -> None:
    """Fit the choice model on the export's rounds; write it and its held-out report."""
    settings = cfg.estimator
    rounds = read_choice_rounds(rnd.pir_data)
    train, held = rounds.split(settings.val_fraction, cfg.seed)
    # Early stopping on people of the training side (never the held-out ones, which
    # score and calibrate the model): a fixed epoch count overfits a larger log.
    fit_on, stop_on = train, held
    if settings.patience > 0:
        inner = train.split(settings.val_fraction, cfg.seed + 1)
        if len(inner[1]):   # one training person: nothing to stop on
            fit_on, stop_on = inner
    early = stop_on is not held
    monitor = {"monitor": "estimate/val/loss", "mode": "min"} if early else {}
    callbacks = [ModelCheckpoint(dirpath=checkpoints, save_last="link", save_top_k=1, **monitor)]
    if early:
        callbacks.append(EarlyStopping(patience=settings.patience, **monitor))
    fit = trainer(rnd.run, callbacks, tracker.loggers, max_epochs=settings.epochs)
    module, frozen = fit_choice_model(settings.network, fit_on, stop_on, settings.epochs,
                                 settings.batch_size, cfg.seed, instantiate(settings.optimizer),
                                 trainer=fit, ckpt_path=resume_path("estimate", checkpoints),
                                 reference=train, restore_best=early)
    stopped = {"early_stopping": {"patience": settings.patience, "rounds": len(stop_on),
                                  "best_epoch": _best_epoch(fit), "epochs_run": fit.current_epoch}
               if early else None}
    if not rank_zero():
        return
    calibration = None
    picks = held.picks()   # the temperature is a Plackett–Luce one: rounds with a pick
    if len(picks) and settings.calibrate:   # the temperature, fitted on the held-out people
        calibration = calibrate(round_scores(frozen.utilities, picks), picks.picked,
                                picks.sessions, seed=cfg.seed)
        frozen.scale = calibration.scale
    report = choice_report(frozen, held if len(held) else train, held_out=bool(len(held)))
    write_json(out.parent / REPORT_NAME, {
        "loss": "choice", **dataclasses.asdict(report), "training_rounds": len(train),
        "same_rounds": int(rounds.same.sum()),
        "tie": None if module.tie is None else float(module.tie.detach()),
        **stopped,
        "calibration": (dataclasses.asdict(calibration) if calibration is not None else None),
        "calibration_note": (None if calibration is not None else
                             "not calibrated (estimator.calibrate=false, or no held-out "
                             "rounds: one session, or estimator.val_fraction=0); the "
                             "utilities are the network's")})
    if calibration is not None:
        log.info("estimate: choice model temperature fitted on %d held-out rounds: scale %.3f;"
                 " ECE %.3f as trained, %.3f calibrated (cross-fitted, %d folds); NLL %.3f -> "
                 "%.3f (chance 1.386)", calibration.rounds, calibration.scale,
                 calibration.ece_raw, calibration.ece, calibration.folds, calibration.nll_raw,
                 calibration.nll)
    save_choice_model(frozen, settings.network, out, report=dataclasses.asdict(report),
                      generators=_served_by(rnd.pir_data))
    tracker.metrics({f"estimate/held_out/{key}": float(value)
                     for key, value in dataclasses.asdict(report).items()
                     if isinstance(value, int | float)}, step=fit.global_step)
    tracker.artifact(out, "estimator", inputs=list(rnd.datasets),
                     metadata={"backbone": settings.network.get("backbone"), "loss": "choice",
                               "pick_accuracy": report.pick_accuracy})
    log.info("estimate: choice model (%s) on %d %s rounds of %d sessions: pick accuracy %.3f "
             "(chance %.2f), NLL %.3f -> %s", settings.network.get("backbone"), report.rounds,
             "held-out" if report.held_out else "training (none held out)", report.sessions,
             report.pick_accuracy, report.chance, report.nll, out)


def _best_epoch(fit: L.Trainer) -> int | None:
    """The epoch (0-based) of the checkpoint early stopping kept, from its file name."""
    best = Path(getattr(fit.checkpoint_callback, "best_model_path", "") or "").stem
    found = re.search(r"epoch=(\d+)", best)
    return int(found.group(1)) if found else None


def _served_by(export: Path) -> list[str]:
    """The SHA-256 of every generator whose images the export's rounds showed (``rounds.csv``'s
    ``generator`` column; rounds of sessions that logged none are left out): the choice
    model's provenance, which ``pirtune-serve --prior`` checks against the served generator."""
    with (export / ROUNDS_NAME).open() as f:
        return sorted({row["generator"] for row in csv.DictReader(f) if row.get("generator")})


def _save(cfg: EstimateConfig, modules: list[PIREstimatorModule], datamodule: PIRDataModule,
          out: Path, tracker: StageTracker, rnd: Round) -> None:
    """Score the held-out images with the frozen estimator; write it, its report and its table."""
    settings = cfg.estimator
    held_out = datamodule.val_records if len(datamodule.val_records) else datamodule.records
    frozen = _frozen(modules, settings.temperature)
    report = evaluate_estimator(frozen, held_out)
    for warning in report.warnings:
        log.warning("estimate: %s", warning)
    write_json(out.parent / REPORT_NAME, dataclasses.asdict(report))
    save_estimator(modules if len(modules) > 1 else modules[0], settings.network,
                   settings.temperature, out, report=dataclasses.asdict(report),
                   targets=settings.targets)
    tracker.metrics({f"estimate/held_out/{key}": value
                     for key, value in dataclasses.asdict(report).items()
                     if isinstance(value, int | float)}, step=modules[-1].global_step)
    records = datamodule.records
    estimates = estimate_pir(frozen, records.images)
    held = set(held_out.image_ids)
    true = ([None] * len(records) if records.true_pir is None else records.true_pir.tolist())
    tracker.table("estimate/images",
                  ["image_id", "image", "class", "true_pir", "observed_pir", "estimated_pir",
                   "split"],
                  [[i, image.permute(1, 2, 0).numpy(), int(c), t, float(o), float(e),
                    "held out" if i in held else "train"]
                   for i, image, c, t, o, e in zip(records.image_ids, records.images,
                                                   records.classes, true, records.observed_pir,
                                                   estimates, strict=True)],
                  image_columns=["image"])
    tracker.artifact(out, "estimator", inputs=list(rnd.datasets),
                     metadata={"backbone": settings.network.get("backbone"),
                               "temperature": settings.temperature,
                               "mae": report.mae, "spearman_observed": report.spearman_observed})
    log.info("estimate: %s on %d held-out images: MAE %.4f, Spearman %.3f (observed), %s (true); "
             "zero share %.2f -> %s", settings.network.get("backbone"), report.n, report.mae,
             report.spearman_observed,
             "n/a" if report.spearman_true is None else f"{report.spearman_true:.3f}",
             report.zero_share, out)


def _frozen(modules: list[PIREstimatorModule], temperature: float) -> FrozenPIREstimator:
    """The trained network(s) frozen for use, on the CPU: one estimator or an ensemble."""
    if len(modules) == 1:
        return modules[0].cpu().frozen(temperature)
    return FrozenPIREnsemble([m.cpu().network for m in modules], temperature)
