"""The quality figures during pre-training, as a Lightning callback."""

from __future__ import annotations

import logging

import lightning as L
import torch

from pirtune.metrics.encoder import load_encoder
from pirtune.metrics.quality import class_accuracy, extract, quality_from_features
from pirtune.metrics.real import class_names, class_reader, draw
from pirtune.models.acgan import render

log = logging.getLogger(__name__)


class QualityCallback(L.Callback):
    """Every ``every_n_iterations`` and at the end: the sampler against a fixed real set.

    A cheap ``stage=quality``: ``samples`` generated images from fixed latents
    (classes alternating) against up to ``samples`` real images drawn once from
    the training data, in the shipped landscape encoder's space, logged to
    every logger as ``pretrain/quality/<figure>`` at the iteration (FID, KID,
    precision, recall, density, coverage, ``class_accuracy_<class>``). No
    floor: the chart's trend is the point. Its random draws use their own
    generators, so training draws the same numbers with or without it.

    Args:
        every_n_iterations: iterations between measurements.
        samples: generated images, and real images at most.
        k: nearest neighbours of precision/recall and density/coverage.
        kid_subsets: KID's random subsets.
        seed: the real images' draw, the latents and KID's subsets.
    """

    def __init__(self, every_n_iterations: int, samples: int = 500, k: int = 5,
                 kid_subsets: int = 10, seed: int = 0) -> None:
        self.every_n_iterations = every_n_iterations
        self.samples = samples
        self.k = k
        self.kid_subsets = kid_subsets
        self.seed = seed
        self.measured_at: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        dataset = trainer.datamodule.train_set
        real, _ = draw(dataset, min(self.samples, len(dataset)), self.seed)
        self.classes = class_names(dataset)
        self.network = load_encoder().to(pl_module.device)
        self.real_features = extract(self.network, real)
        rng = torch.Generator().manual_seed(self.seed)
        self.z = torch.randn(self.samples, pl_module.latent_dim, generator=rng)
        self.labels = torch.arange(self.samples) % pl_module.num_classes
        # Readability means something only when the encoder reads the data's classes
        # and the generator draws them.
        self.readable = (class_reader(self.classes, self.network) is not None
                         and pl_module.num_classes == len(self.classes))

    def measure(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Score the module's sampler now and log the figures at its iteration."""
        if not trainer.is_global_zero or self.measured_at == module.iteration:
            return
        features = extract(self.network, render(module.sampler, self.z, self.labels))
        # The class head on the features just extracted: one pass through the encoder, not two.
        readability = (class_accuracy(self.network.class_head, features.float(), self.labels)
                       if self.readable else None)
        # KID's subsets: half the smaller set, so that they differ.
        size = max(2, min(len(self.real_features), len(features)) // 2)
        q = quality_from_features(self.real_features, features, self.k, self.kid_subsets,
                                  readability, self.seed, size)
        figures = q.as_dict(self.classes)
        accuracy = figures.pop("class_accuracy") or {}
        values = {f"pretrain/quality/{key}": value for key, value in figures.items()}
        values |= {f"pretrain/quality/class_accuracy_{c}": a for c, a in accuracy.items()}
        for logger in trainer.loggers:
            logger.log_metrics(values, step=module.iteration)
        self.measured_at = module.iteration
        log.info("pretrain: iteration %d: FID %.3f, precision %.3f, recall %.3f",
                 module.iteration, q.fid, q.precision, q.recall)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration % self.every_n_iterations == 0:
            self.measure(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.measure(trainer, pl_module)
