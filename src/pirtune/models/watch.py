"""Watching tuning: gold vs proxy, quality, distance and D on fixed latents (issue 16).

In simulation the true objective (the *gold* PIR) is known, so tuning can be
watched for what real studies cannot see: how far the estimator (the
*proxy*) and the truth part ways as G climbs the proxy (reward-model
over-optimisation, Gao et al. 2023), and what that costs in image quality.
Every ``every`` iterations, at the start and at the end, ``TuningWatchCallback``
renders the tuned generator's samples for fixed latents and records:

* ``proxy_pir``: the estimator's mean PIR (an ensemble's mean); with an
  ensemble also ``proxy_sd`` (the members' mean disagreement) and
  ``proxy_lower`` (mean − λ·SD, the conservative reward);
* ``gold_pir``: the objective's mean PIR, and ``gap`` = proxy − gold (no gold
  when the estimator learned from real interactions);
* FID, KID, precision, recall, density, coverage and class accuracy against
  real images (``QualityProbe``, as in pre-training);
* with gold, ``tilted_fid``, ``tilted_precision``, ``tilted_recall`` and
  ``tilted_ess``: the samples against the probe's real images tilted by the
  gold to the samples' mean gold PIR (``pirtune.metrics.tilted``; the floor is
  a quarter of the probe's real images, and a refused tilt leaves them out);
* ``distance``: the samples' mean RMS pixel distance ([0, 1] scale) from the
  untuned generator's samples for the same latents, the x-axis of Gao et al.;
* ``d_real_acc``, ``d_fake_acc``: D's accuracy on real images and on these
  samples, and ``adv_to_pir``: |adversarial loss| / (w_PIR · reward) on them.

They are logged as ``tune/eval/<key>`` at the iteration and written to the
round's ``tune_watch.csv`` (one row per check); ``tune_watch.json`` keeps the
early-stopping record.

Early stopping without gold (``early_stop``): a real study has the ensemble
but no gold. The rule watches the ensemble's lower bound ``proxy_lower``
(mean − λ·SD on the fixed latents, λ = ``tune.reward_lambda``): while the
members agree that the samples improve, it rises; once tuning leaves the
data the members learned from, their disagreement grows faster than their
mean and it falls. The rule stops at the first check after which the lower
bound has not beaten its best for ``patience`` checks, and names the best
check's iteration as where tuning should have ended. ``record`` only logs
these (``early_stop_best``, ``early_stop_at``), beside the gold optimum
(``gold_best``) in simulation; ``stop`` also ends the fit there.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import Dataset

from pirtune.errors import UsageError
from pirtune.estimator.ensemble import conservative_reward, members_of
from pirtune.files import atomic_write, write_json
from pirtune.metrics.callback import QualityProbe
from pirtune.metrics.quality import extract
from pirtune.metrics.tilted import TiltError, tilted_quality
from pirtune.models.bundle import render
from pirtune.models.losses import generator_loss
from pirtune.objectives import score

log = logging.getLogger(__name__)

WATCH_NAME = "tune_watch.csv"
WATCH_SUMMARY = "tune_watch.json"
EARLY_STOP = ("off", "record", "stop")


def rms_distance(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Each image's root-mean-square pixel distance from its reference: [N, ...] → [N]."""
    return (images - reference).pow(2).flatten(1).mean(1).sqrt()


class LowerBoundStop:
    """The early-stopping rule: stop once the ensemble's lower bound stops rising.

    ``update`` takes each check's (iteration, lower bound) in order; ``best``
    is the iteration of the highest bound so far, ``fired_at`` the check at
    which ``patience`` checks in a row have not beaten it (``None`` until then)
    and ``stop_best`` the best check when it fired: where tuning should end.
    """

    def __init__(self, patience: int) -> None:
        if patience < 1:
            raise UsageError(f"tune.early_stop_patience={patience} must be at least 1")
        self.patience = patience
        self.best: int | None = None
        self.best_value = -math.inf
        self.misses = 0
        self.fired_at: int | None = None
        self.stop_best: int | None = None

    def update(self, iteration: int, value: float) -> bool:
        """Record a check; True when the rule fires at it."""
        if value > self.best_value:
            self.best, self.best_value, self.misses = iteration, value, 0
        else:
            self.misses += 1
        if self.fired_at is None and self.misses >= self.patience:
            self.fired_at, self.stop_best = iteration, self.best
            return True
        return False


class TuningWatchCallback(L.Callback):
    """The checks of the module docstring, every ``every`` iterations, at the start and end.

    Args:
        every: iterations between checks.
        samples: fixed latents (and real images at most).
        reference: the untuned generator (the distance is measured from its samples).
        objective: the gold, images in [0, 1] → PIR [B]; ``None``: no gold.
        out_dir: where ``tune_watch.csv`` and ``tune_watch.json`` go.
        early_stop: ``off``, ``record`` or ``stop`` (see the module docstring).
        patience: checks without a better lower bound before the rule fires.
        reward_lambda: λ of the lower bound.
        seed: the latents, the real images and KID's subsets.
        real: the real images to compare with; ``None``: the fit's
            ``datamodule.train_set`` (a method whose D trains on something else,
            such as ``distill``'s tilted pool, passes the real set here).
    """

    def __init__(self, every: int, samples: int, reference: nn.Module,
                 objective: nn.Module | None, out_dir: Path, early_stop: str = "off",
                 patience: int = 2, reward_lambda: float = 1.0, seed: int = 0,
                 real: Dataset | None = None) -> None:
        if early_stop not in EARLY_STOP:
            raise UsageError(f"tune.early_stop={early_stop!r} is unknown; choose one of: "
                             f"{', '.join(EARLY_STOP)}")
        self.every = every
        self.samples = samples
        self.reference = reference
        self.objective = objective
        self.out_dir = Path(out_dir)
        self.early_stop = early_stop
        self.rule = LowerBoundStop(patience)
        self.reward_lambda = reward_lambda
        self.seed = seed
        self.real = real
        self.rows: list[dict[str, float]] = []
        self.measured_at: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if self.early_stop != "off" and not hasattr(pl_module.estimator, "members"):
            raise UsageError(f"tune.early_stop={self.early_stop} watches the ensemble's "
                             "disagreement; estimate with estimator.members=3 (or more)")
        real = self.real if self.real is not None else trainer.datamodule.train_set
        self.probe = QualityProbe(real, self.samples,
                                  pl_module.latent_dim, pl_module.num_classes, pl_module.device,
                                  seed=self.seed)
        self.start = render(self.reference.to(pl_module.device), self.probe.z, self.probe.labels)
        self.real_gold = None
        if self.objective is not None:
            self.objective = self.objective.to(pl_module.device)
            self.real_gold = score(self.objective, self.probe.real.to(pl_module.device),
                                   len(self.probe.real))
        # A resumed fit keeps the checks made before its checkpoint.
        self.rows = [row for row in _read_rows(self.out_dir / WATCH_NAME)
                     if row["iteration"] < pl_module.iteration]
        for row in self.rows:
            if "proxy_lower" in row:
                self.rule.update(int(row["iteration"]), row["proxy_lower"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.measure(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration % self.every == 0:
            self.measure(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.measure(trainer, pl_module)
        if trainer.is_global_zero:
            write_json(self.out_dir / WATCH_SUMMARY, self.summary())

    @torch.no_grad()
    def check(self, module: L.LightningModule) -> dict[str, float]:
        """One check of the module's sampler: the figures of the module docstring."""
        images = self.probe.images(module.sampler)                         # [N, 3, R, R]
        members = members_of(module.estimator, images)                      # [K, N]
        row: dict[str, float] = {"iteration": float(module.iteration),
                                 "proxy_pir": float(members.mean())}
        if len(members) > 1:
            row["proxy_sd"] = float(members.std(0, correction=0).mean())
            row["proxy_lower"] = float(conservative_reward(members, self.reward_lambda).mean())
        if self.objective is not None:
            row["gold_pir"] = float(score(self.objective, images, len(images)).mean())
            row["gap"] = row["proxy_pir"] - row["gold_pir"]
        _, figures = self.probe.score(images)
        row |= {key: float(value) for key, value in figures.items()}
        if self.real_gold is not None:
            row |= self._tilted(images, row["gold_pir"])
        row["distance"] = float(rms_distance(images, self.start).mean())
        row |= self._discriminator(module, images, members)
        return row

    def _tilted(self, images: torch.Tensor, gold: float) -> dict[str, float]:
        """The samples against the probe's real images tilted to their mean gold PIR."""
        try:
            tilted = tilted_quality(self.probe.real_features,
                                    self.real_gold, extract(self.probe.network, images), gold,
                                    k=self.probe.k, seed=self.seed,
                                    ess_floor=len(self.probe.real) / 4)
        except TiltError:
            return {}
        return {"tilted_fid": tilted.fid, "tilted_precision": tilted.precision,
                "tilted_recall": tilted.recall, "tilted_ess": tilted.ess}

    def _discriminator(self, module: L.LightningModule, images: torch.Tensor,
                       members: torch.Tensor) -> dict[str, float]:
        """D's accuracies on real images and on ``images``, and the adversarial/PIR balance."""
        discriminator = module.discriminator
        was_training = discriminator.training
        discriminator.eval()
        device = module.device
        real_source, _ = discriminator(self.probe.real.to(device) * 2 - 1,
                                       self.probe.real_labels.to(device))
        fake_source, fake_logits = discriminator(images.to(device) * 2 - 1,
                                                 self.probe.labels.to(device))
        discriminator.train(was_training)
        out = {"d_real_acc": float((real_source > 0).float().mean()),
               "d_fake_acc": float((fake_source < 0).float().mean())}
        w_pir = getattr(module, "w_pir", 0.0)
        if w_pir > 0:
            adversarial = generator_loss(fake_source, fake_logits, self.probe.labels.to(device),
                                         module.w_fake_class, module.loss).total
            reward, _ = module.rewards(images.to(device))
            out["adv_to_pir"] = float(adversarial.abs() / (w_pir * reward.mean()).abs()
                                      .clamp(min=1e-12))
        return out

    def measure(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Check now (once per iteration), log as ``tune/eval/<key>``, rewrite the CSV."""
        if not trainer.is_global_zero or self.measured_at == module.iteration:
            return
        self.measured_at = module.iteration
        row = self.check(module)
        fired = "proxy_lower" in row and self.rule.update(module.iteration, row["proxy_lower"])
        self.rows.append(row)
        _write_rows(self.out_dir / WATCH_NAME, self.rows)
        for logger in trainer.loggers:
            logger.log_metrics({f"tune/eval/{key}": value for key, value in row.items()
                                if key != "iteration"}, step=module.iteration)
        log.info("tune: iteration %d: proxy %.4f, gold %s, FID %.3f, recall %.3f, distance %.4f, "
                 "D acc real %.2f fake %.2f", module.iteration, row["proxy_pir"],
                 f"{row['gold_pir']:.4f}" if "gold_pir" in row else "n/a", row["fid"],
                 row["recall"], row["distance"], row["d_real_acc"], row["d_fake_acc"])
        if fired and self.early_stop != "off":
            log.info("tune: early stopping rule fires at iteration %d (best lower bound at %d)%s",
                     module.iteration, self.rule.stop_best,
                     "; stopping" if self.early_stop == "stop" else "; recorded only")
            if self.early_stop == "stop":
                trainer.should_stop = True

    def summary(self) -> dict[str, Any]:
        """The early-stopping record: where the rule stopped, its best check, gold's best."""
        gold = [(row["gold_pir"], int(row["iteration"])) for row in self.rows
                if "gold_pir" in row]
        return {"early_stop": self.early_stop, "patience": self.rule.patience,
                "reward_lambda": self.reward_lambda,
                "early_stop_at": self.rule.fired_at,
                "early_stop_best": (self.rule.stop_best if self.rule.fired_at is not None
                                    else self.rule.best),
                "gold_best": max(gold)[1] if gold else None,
                "last_iteration": int(self.rows[-1]["iteration"]) if self.rows else None,
                "checks": len(self.rows)}


def _write_rows(path: Path, rows: list[dict[str, float]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def _read_rows(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [{key: float(value) for key, value in row.items() if value != ""}
                for row in csv.DictReader(f)]


def read_watch(path: str | Path) -> list[dict[str, float]]:
    """The checks a ``tune_watch.csv`` holds, one dict per row (iteration first)."""
    return _read_rows(Path(path))
