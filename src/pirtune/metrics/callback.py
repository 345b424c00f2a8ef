"""The quality figures during pre-training, as a Lightning callback."""

from __future__ import annotations

import logging

import lightning as L
import torch

from pirtune.metrics.encoder import load_encoder
from pirtune.metrics.quality import Quality, class_accuracy, extract, quality_from_features
from pirtune.metrics.real import class_names, class_reader, draw
from pirtune.models.bundle import render

log = logging.getLogger(__name__)


class QualityProbe:
    """A fixed real set and fixed latents, and the quality of a generator's samples for them.

    What the training callbacks share (this one in pre-training, the tuning
    watch): ``samples`` latents (classes alternating) drawn once with ``seed``,
    up to ``samples`` real images drawn once from ``dataset`` and their features
    in the shipped landscape encoder's space, and ``score`` for images drawn
    from those latents. Its random draws use their own generators, so training
    draws the same numbers with or without it.

    Args:
        dataset: the real images, (uint8 image, class) items.
        samples: latents, and real images at most.
        latent_dim, num_classes: the generator's.
        device: where the encoder runs.
        k: nearest neighbours of precision/recall and density/coverage.
        kid_subsets: KID's random subsets.
        seed: the real images' draw, the latents and KID's subsets.
    """

    def __init__(self, dataset, samples: int, latent_dim: int, num_classes: int,
                 device: torch.device | str, k: int = 5, kid_subsets: int = 10,
                 seed: int = 0) -> None:
        self.real, self.real_labels = draw(dataset, min(samples, len(dataset)), seed)
        self.classes = class_names(dataset)
        self.network = load_encoder().to(device)
        self.real_features = extract(self.network, self.real)
        rng = torch.Generator().manual_seed(seed)
        self.z = torch.randn(samples, latent_dim, generator=rng)  # [samples, latent]
        self.labels = torch.arange(samples) % num_classes           # [samples]
        self.k, self.kid_subsets, self.seed = k, kid_subsets, seed
        # Readability means something only when the encoder reads the data's classes
        # and the generator draws them.
        self.readable = (class_reader(self.classes, self.network) is not None
                         and num_classes == len(self.classes))

    def images(self, generator: torch.nn.Module) -> torch.Tensor:
        """The generator's images [samples, 3, R, R] in [0, 1] for the fixed latents."""
        return render(generator, self.z, self.labels)

    def score(self, images: torch.Tensor) -> tuple[Quality, dict[str, float]]:
        """The quality of ``images`` (from the fixed latents), and its figures flattened:
        FID, KID, precision, recall, density, coverage, ``class_accuracy_<class>``."""
        features = extract(self.network, images)
        # The class head on the features just extracted: one pass through the encoder, not two.
        readability = (class_accuracy(self.network.class_head, features.float(), self.labels)
                       if self.readable else None)
        # KID's subsets: half the smaller set, so that they differ.
        size = max(2, min(len(self.real_features), len(features)) // 2)
        q = quality_from_features(self.real_features, features, self.k, self.kid_subsets,
                                  readability, self.seed, size)
        figures = q.as_dict(self.classes)
        accuracy = figures.pop("class_accuracy") or {}
        figures |= {f"class_accuracy_{c}": a for c, a in accuracy.items()}
        return q, figures


class QualityCallback(L.Callback):
    """Every ``every_n_iterations`` and at the end: the sampler against a fixed real set.

    A cheap ``stage=quality`` (``QualityProbe`` on the training data), logged to
    every logger as ``pretrain/quality/<figure>`` at the iteration (FID, KID,
    precision, recall, density, coverage, ``class_accuracy_<class>``). No
    floor: the chart's trend is the point.

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
        self.probe = QualityProbe(trainer.datamodule.train_set, self.samples, pl_module.latent_dim,
                                  pl_module.num_classes, pl_module.device, self.k,
                                  self.kid_subsets, self.seed)

    def measure(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Score the module's sampler now and log the figures at its iteration."""
        if not trainer.is_global_zero or self.measured_at == module.iteration:
            return
        q, figures = self.probe.score(self.probe.images(module.sampler))
        values = {f"pretrain/quality/{key}": value for key, value in figures.items()}
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
