"""PIRTuningModule: the ACGAN steered by a frozen PIR estimator (PIR paper, section 2.4).

The generator's loss becomes the pre-training one plus the estimated PIR of
its samples: it maximises
``L_fake image fools + w_fake_class·L_fake class + w_PIR·E[R(G(z, c))]``
with R the frozen estimator at temperature 0.01, so it minimises
``generator_loss − w_PIR·mean R``. The discriminator keeps training on real
images exactly as in pre-training, and the estimator never changes (it has no
optimiser and no gradients of its own; gradients flow through it to G).

Options beyond the paper, off by default (issue 16):

* ``reward="conservative"``: with an ensemble estimator (``FrozenPIREnsemble``),
  G climbs the members' mean − λ·SD instead of their mean (Coste et al. 2024).
* ``anchor`` > 0: a stay-close term ``anchor·mean‖φ(G(z, c)) − φ(G₀(z, c))‖²``
  with G₀ a frozen copy of the generator tuning started from and φ the
  identity (pixels, in [0, 1]) or the landscape encoder's features; its
  value and gradient are zero until G moves.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from pirtune.errors import UsageError
from pirtune.estimator.frozen import FrozenPIREstimator
from pirtune.metrics.encoder import load_encoder
from pirtune.models.acgan import ACGANModule, OptimizerFactory
from pirtune.models.bundle import load_bundle
from pirtune.models.losses import SourceLoss
from pirtune.tuning.reward import Reward


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
        reward: ``"mean"`` (the estimate; an ensemble's mean) or ``"conservative"``
            (an ensemble's mean − ``reward_lambda``·SD).
        reward_lambda: λ of the conservative reward.
        anchor: weight of the stay-close term (0: none, the paper).
        anchor_space: ``"pixels"`` or ``"features"`` (the shipped landscape encoder).
        whole_step, channels_last: as in ACGANModule; under ``whole_step="graph"``
            the frozen estimator's forward (and G₀'s, for the anchor) are inside
            the captured graph, with the gradient that flows through it to G.
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
        reward: str = "mean",
        reward_lambda: float = 1.0,
        anchor: float = 0.0,
        anchor_space: str = "pixels",
        whole_step: str | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__(generator, discriminator, g_optimizer, d_optimizer, w_fake_class,
                         w_real_class, ema_decay, compile_mode, loss, augment, r1_gamma,
                         whole_step, channels_last)
        if not isinstance(estimator, FrozenPIREstimator):
            raise UsageError(f"estimator must be a FrozenPIREstimator, not "
                             f"{type(estimator).__name__}; load it with load_estimator")
        if w_pir < 0:
            raise UsageError(f"tune.w_pir={w_pir} must be at least 0 (the paper uses 1000)")
        self.reward_term = Reward(estimator, reward, reward_lambda)
        if anchor < 0:
            raise UsageError(f"tune.anchor={anchor} must be at least 0 (0: no anchor)")
        if anchor_space not in ("pixels", "features"):
            raise UsageError(f"tune.anchor_space={anchor_space!r} is unknown; choose pixels "
                             "or features")
        self.estimator = estimator
        self.w_pir = w_pir
        self.reward = reward
        self.reward_lambda = reward_lambda
        self.anchor = anchor
        self.anchor_space = anchor_space
        # G₀: the generator as tuning starts, frozen. It follows the module's train/eval
        # mode like G, so batch norm treats both alike and the anchor starts at exactly 0.
        self.anchor_generator: nn.Module | None = None
        self.anchor_features: nn.Module | None = None
        if anchor > 0:
            self.anchor_generator = copy.deepcopy(generator).requires_grad_(False)
            if anchor_space == "features":
                self.anchor_features = FrozenFeatures(load_encoder())

    def rewards(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reward G climbs and the members' estimates: [B] and [K, B] (K = 1 alone).

        Images [B, 3, H, W] in [0, 1]. The reward is the estimate (an ensemble's
        mean), or the conservative mean − λ·SD.
        """
        return self.reward_term(images)

    def anchor_distance(self, fake: torch.Tensor) -> torch.Tensor:
        """Mean squared distance of ``fake`` from G₀'s output for the step's (z, c).

        In pixels ([0, 1]) or in the encoder's features, per element; a scalar.
        """
        if self.anchor_generator is None or self.step_latents is None:
            return fake.new_zeros(())
        z, labels = self.step_latents
        with torch.no_grad():
            reference = self.anchor_generator(z, labels)
        ours, theirs = (fake.clamp(-1, 1) + 1) / 2, (reference.clamp(-1, 1) + 1) / 2
        if self.anchor_features is not None:
            with torch.no_grad():
                theirs = self.anchor_features(theirs)
            ours = self.anchor_features(ours)
        return (ours - theirs).pow(2).mean()

    def _generator_objective(
        self, fake: torch.Tensor, fake_labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Pre-training's generator loss minus w_PIR times the mean reward (plus the anchor)."""
        gan_loss, parts = super()._generator_objective(fake, fake_labels)
        reward, members = self.rewards((fake.clamp(-1, 1) + 1) / 2)  # G: [-1, 1]; R: [0, 1]
        pir_term = self.w_pir * reward.mean()
        loss = gan_loss - pir_term
        parts = {**parts, "estimated_pir": members.mean()}
        if self.w_pir > 0:
            # How much the adversarial part weighs beside the PIR term (D may win outright).
            parts["adv_to_pir"] = gan_loss.detach().abs() / pir_term.detach().abs().clamp(1e-12)
        if self.reward == "conservative":
            parts |= {"reward": reward.mean(), "members_sd": members.std(0, correction=0).mean()}
        if self.anchor > 0:
            distance = self.anchor_distance(fake)
            loss = loss + self.anchor * distance
            parts["anchor_distance"] = distance
        return loss, parts

    @classmethod
    def from_bundle(cls, bundle: str, estimator: FrozenPIREstimator, lr: float,
                    **kwargs: Any) -> tuple[PIRTuningModule, dict[str, Any]]:
        """The module for a generator bundle (``module_from_bundle``)."""
        return module_from_bundle(cls, bundle, estimator, lr, **kwargs)


def module_from_bundle(cls: type, bundle: str, estimator: FrozenPIREstimator, lr: float,
                       **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """``cls(generator, discriminator, estimator, g_optimizer, d_optimizer, ...)`` for a bundle.

    The paper keeps pre-training's settings and lowers the learning rate (2.4),
    so both optimisers are rebuilt from the bundle's model config with ``lr``,
    and D trains as the bundle was trained. Returns the module and the bundle's
    metadata.
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


class FrozenFeatures(nn.Module):
    """A feature network used as a fixed metric: no trainable weights, always in eval mode."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenFeatures:
        # The tuning module's .train() must not switch its batch norm to batch statistics.
        super().train(mode)
        self.network.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] → features [B, d]."""
        return self.network(images).flatten(1)
