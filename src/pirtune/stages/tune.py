"""Stage ``tune``: the round's generator tuned against its frozen estimator (section 2.4).

``PIRTuningModule`` fine-tunes the round's generator and discriminator; the
discriminator keeps training on ``data`` as in pre-training. Checkpoints go
to ``tune_ckpt/``, the tuned networks to ``tuned.pt`` (a generator bundle),
logged as a ``generator`` artifact made from the round's generator and
estimator. With ``eval_every`` > 0 the tuning is watched on fixed latents
(``pirtune.models.watch``): proxy and gold PIR, quality, distance from the
untuned samples and D's accuracies, in the round's ``tune_watch.csv``. The
gold is the objective, unless the PIR data hold no true PIRs (the web app's
picks; a simulated crowd's, ``data.hidden_objective=true``, have their hidden one).
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint

from pirtune.estimator.module import load_estimator
from pirtune.models.acgan import STEPS_PER_ITERATION
from pirtune.models.bundle import load_bundle, save_bundle
from pirtune.models.tuning import PIRTuningModule
from pirtune.models.watch import TuningWatchCallback
from pirtune.objectives import build_objective
from pirtune.stages.config import TuneConfig
from pirtune.stages.rundir import Round, begin_stage
from pirtune.stages.tracking import parameter_counts, track
from pirtune.stages.training import barrier, gan_trainer, resume_path

log = logging.getLogger(__name__)


def tune(cfg: TuneConfig, rnd: Round) -> Path:
    """Write the round's ``tuned.pt`` (unless done); return its path."""
    out = rnd.tuned
    checkpoints = rnd.dir / "tune_ckpt"
    record = begin_stage("tune", rnd.dir,
                         {**cfg.fingerprint(), "from": str(rnd.start),
                          "estimator": str(rnd.estimator)}, out, own=(checkpoints,),
                         extendable=("steps",))
    if record is None:
        return out
    estimator = load_estimator(rnd.estimator)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    # Built before seeding: loading its reference generator draws initial weights, which
    # must not move tuning's random stream (watched or not, tuning is the same).
    watch = _watch(cfg, rnd) if cfg.eval_every > 0 else None
    L.seed_everything(cfg.seed + rnd.index, workers=True, verbose=False)
    module, meta = PIRTuningModule.from_bundle(
        rnd.start, estimator, cfg.lr, w_pir=cfg.w_pir, ema_decay=cfg.ema_decay,
        compile_mode=cfg.compile_mode, reward=cfg.reward, reward_lambda=cfg.reward_lambda,
        anchor=cfg.anchor, anchor_space=cfg.anchor_space, whole_step=cfg.whole_step,
        channels_last=cfg.channels_last)
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=0,
                        every_n_train_steps=STEPS_PER_ITERATION * cfg.checkpoint_every),
    ]
    if watch is not None:
        callbacks.append(watch)
    with track(rnd.run, "tune", rnd, record) as tracker:
        tracker.config(parameter_counts(generator=module.generator,
                                        discriminator=module.discriminator,
                                        estimator=estimator))
        fit = gan_trainer(rnd.run, callbacks, tracker.loggers, cfg.steps, datamodule)
        fit.fit(module, datamodule=datamodule, ckpt_path=resume_path("tune", checkpoints))
        if fit.is_global_zero and not fit.interrupted:
            settings = {key: value for key, value in cfg.fingerprint().items()
                        if not key.startswith(("data.", "objective."))}
            digest = save_bundle(module, meta["model"], out, command=rnd.run.command,
                                 seed=cfg.seed, round=rnd.index, tuned_from=str(rnd.start),
                                 estimator=str(rnd.estimator), tuning=settings,
                                 torch=str(torch.__version__), python=platform.python_version())
            tracker.artifact(out, "generator", inputs=[rnd.start, rnd.estimator],
                             metadata={"iteration": module.iteration, "sha256": digest,
                                       "round": rnd.index})
            log.info("tune: wrote %s (sha256 %s) after %d steps", out, digest, module.iteration)
    barrier()
    return out


def _has_gold(rnd: Round) -> bool:
    """Whether the round's PIR data hold true PIRs (simulated users) for the gold."""
    for dataset in rnd.datasets:
        table = dataset / "pir.csv"
        if not table.is_file():
            return False
        with table.open() as f:
            if "true_pir" not in f.readline():
                return False
    return True


def _watch(cfg: TuneConfig, rnd: Round) -> TuningWatchCallback:
    """The tuning watch of ``eval_every``, against the round's untuned start generator."""
    objective = None
    if cfg.objective is not None and (cfg.hidden_objective or _has_gold(rnd)):
        objective = build_objective(cfg.objective)   # simulated users', or a crowd's hidden one
    else:
        log.info("tune: no gold PIR (the PIR data hold no true PIRs); watching the proxy only")
    reference, _, _ = load_bundle(rnd.start)
    return TuningWatchCallback(cfg.eval_every, cfg.eval_samples, reference, objective, rnd.dir,
                               cfg.early_stop, cfg.early_stop_patience, cfg.reward_lambda,
                               seed=cfg.seed)
