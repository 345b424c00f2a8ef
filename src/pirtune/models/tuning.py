"""PIRTuningModule: the ACGAN steered by a frozen PIR estimator (PIR paper, section 2.4).

The generator's loss becomes the pre-training one plus the estimated PIR of
its samples: it maximises
``L_fake image fools + w_fake_class·L_fake class + w_PIR·E[R(G(z, c))]``
with R the frozen estimator at temperature 0.01, so it minimises
``generator_loss − w_PIR·mean R``. The discriminator keeps training on real
images exactly as in pre-training, and the estimator never changes (it has no
optimiser and no gradients of its own; gradients flow through it to G).
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from pirtune.errors import UsageError
from pirtune.estimator.module import FrozenPIREstimator
from pirtune.models.acgan import ACGANModule, OptimizerFactory, load_bundle
from pirtune.models.losses import SourceLoss


class PIRTuningModule(ACGANModule):
    """Tunes a pre-trained ACGAN towards a higher estimated PIR.

    Args:
        generator, discriminator: the pre-trained networks (``load_bundle``).
        estimator: the frozen PIR estimator R (images in [0, 1] → PIR [B]).
        g_optimizer, d_optimizer: partial optimizers (paper: pre-training's, lr 1e-6).
        w_pir: weight of the estimated-PIR term (paper: 1000).
        w_fake_class, w_real_class: as in pre-training.
        ema_decay: ``None``, or a moving average of the tuned generator (see ACGANModule).
        loss, augment, r1_gamma: the discriminator's training as in pre-training
            (``from_bundle`` takes them from the bundle; see ACGANModule).
    """

    log_prefix = "tune/train"

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        estimator: FrozenPIREstimator,
        g_optimizer: OptimizerFactory,
        d_optimizer: OptimizerFactory,
        w_pir: float = 1000.0,
        w_fake_class: float = 1.5,
        w_real_class: float = 1.0,
        ema_decay: float | None = None,
        compile_mode: str | None = None,
        loss: SourceLoss = "paper",
        augment: str | None = None,
        r1_gamma: float = 0.0,
    ) -> None:
        super().__init__(generator, discriminator, g_optimizer, d_optimizer, w_fake_class,
                         w_real_class, ema_decay, compile_mode, loss, augment, r1_gamma)
        if not isinstance(estimator, FrozenPIREstimator):
            raise UsageError(f"estimator must be a FrozenPIREstimator, not "
                             f"{type(estimator).__name__}; load it with load_estimator")
        if w_pir < 0:
            raise UsageError(f"tune.w_pir={w_pir} must be at least 0 (the paper uses 1000)")
        self.estimator = estimator
        self.w_pir = w_pir

    def _generator_objective(
        self, fake: torch.Tensor, fake_labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Pre-training's generator loss minus w_PIR times the mean estimated PIR."""
        gan_loss, parts = super()._generator_objective(fake, fake_labels)
        estimated = self.estimator((fake.clamp(-1, 1) + 1) / 2)  # G: [-1, 1]; R: [0, 1]
        return (gan_loss - self.w_pir * estimated.mean(),
                {**parts, "estimated_pir": estimated.mean()})

    @classmethod
    def from_bundle(cls, bundle: str, estimator: FrozenPIREstimator, lr: float,
                    **kwargs: Any) -> tuple[PIRTuningModule, dict[str, Any]]:
        """The module for a generator bundle, with the bundle's optimisers at ``lr``.

        The paper keeps pre-training's settings and lowers the learning rate (2.4),
        so both optimisers are rebuilt from the bundle's model config with ``lr``.
        Returns the module and the bundle's metadata.
        """
        generator, discriminator, meta = load_bundle(bundle)
        model = meta["model"]
        optimizers = {name: instantiate({**model[name], "lr": lr})
                      for name in ("g_optimizer", "d_optimizer")}
        # Bundles written before these options existed trained with the paper's D.
        trained = {"loss": "paper", "augment": None, "r1_gamma": 0.0}
        kwargs = {"w_fake_class": model["w_fake_class"], "w_real_class": model["w_real_class"],
                  **{key: model.get(key, default) for key, default in trained.items()},
                  **kwargs}
        return cls(generator, discriminator, estimator, **optimizers, **kwargs), meta
