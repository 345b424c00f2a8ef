"""``tune.method=latent``: G frozen, a learned latent prior with its exact KL as the leash."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pirtune.errors import UsageError
from pirtune.estimator.frozen import FrozenPIREstimator
from pirtune.models.bundle import LatentPrior, Sampler, sampler_state
from pirtune.tuning import TuningMethod
from pirtune.tuning.base import TuneContext, Tuned, fit
from pirtune.tuning.reward import Reward


class LatentPriorModule(L.LightningModule):
    """Trains a ``LatentPrior`` to maximise E[R(G(T(ε, c), c))] − β·KL(q‖N(0, I)).

    G and D are frozen (D only serves the tuning watch's accuracies); only the
    prior learns. The KL is exact (``LatentPrior.kl``), averaged over the
    classes, which are drawn uniformly. Each step draws a fresh batch of
    ε ~ N(0, I) and classes.

    Args:
        generator, discriminator: the start bundle's networks (frozen here).
        estimator: the frozen estimator R.
        prior: the prior to train (starts at the identity: KL 0).
        beta: weight β ≥ 0 of the KL.
        lr: Adam's learning rate on the prior's parameters.
        batch_size: draws per step.
        reward, reward_lambda: ``tune.reward`` and its λ (``Reward``).
    """

    log_prefix = "tune/train"

    def __init__(self, generator: nn.Module, discriminator: nn.Module,
                 estimator: FrozenPIREstimator, prior: LatentPrior, beta: float, lr: float,
                 batch_size: int = 64, reward: str = "mean", reward_lambda: float = 1.0,
                 w_fake_class: float = 1.5, loss: str = "paper") -> None:
        super().__init__()
        self.generator = generator.eval().requires_grad_(False)
        self.discriminator = discriminator.eval().requires_grad_(False)
        self.estimator = estimator
        self.reward_term = Reward(estimator, reward, reward_lambda)
        self.prior = prior
        self.beta, self.lr, self.batch_size = beta, lr, batch_size
        self.w_fake_class, self.loss = w_fake_class, loss   # read by the watch

    @property
    def sampler(self) -> Sampler:
        """The tuned result: G with the prior as it stands."""
        return Sampler(self.generator, prior=self.prior)

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes

    @property
    def iteration(self) -> int:
        return self.global_step

    def train(self, mode: bool = True) -> LatentPriorModule:
        # The frozen networks keep their running statistics and no dropout.
        super().train(mode)
        self.generator.eval()
        self.discriminator.eval()
        return self

    def objective(self, eps: torch.Tensor, labels: torch.Tensor
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss −mean R + β·KL for noise ε [B, latent] and classes [B], and its parts."""
        images = self.sampler.images(eps, labels)
        reward, members = self.reward_term(images)
        kl = self.prior.kl().mean()
        loss = -reward.mean() + self.beta * kl
        return loss, {"reward": reward.mean(), "estimated_pir": members.mean(), "kl": kl}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        eps = torch.randn(self.batch_size, self.latent_dim, device=self.device)
        labels = torch.randint(self.num_classes, (self.batch_size,), device=self.device)
        loss, parts = self.objective(eps, labels)
        self.log_dict({f"{self.log_prefix}/{k}": v.detach() for k, v in
                       {"loss": loss, **parts}.items()}, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam([p for p in self.prior.parameters() if p.requires_grad],
                                lr=self.lr)


class LatentMethod(TuningMethod):
    """A per-class latent prior ε ↦ z in front of the frozen generator.

    Images stay the generator's own (G does not change); the prior only moves
    where in its latent space they are drawn from. ``form="shift"`` (the
    default) moves the mean only, so z keeps N(0, I)'s spread and stays in the
    typical set where G draws well; ``"diagonal"`` learns a scale too.

    Args:
        beta: weight β ≥ 0 of KL(q‖N(0, I)) against the reward.
        form: ``"shift"`` or ``"diagonal"`` (``LatentPrior``).
        max_shift: ``None``, or a hard cap on ‖μ_c‖.
        lr: Adam's learning rate on the prior (``tune.lr`` is the generator's).
        batch_size: draws per step.
    """

    name = "latent"

    def __init__(self, beta: float = 0.01, form: str = "shift", max_shift: float | None = None,
                 lr: float = 0.02, batch_size: int = 64) -> None:
        if not beta >= 0:
            raise UsageError(f"tune.method.beta={beta} must be at least 0 (the KL's weight)")
        if not lr > 0:
            raise UsageError(f"tune.method.lr={lr} must be positive")
        if batch_size < 1:
            raise UsageError(f"tune.method.batch_size={batch_size} must be at least 1")
        LatentPrior(1, 1, form, max_shift)   # its own checks, before any work
        self.beta, self.form, self.max_shift = beta, form, max_shift
        self.lr, self.batch_size = lr, batch_size

    def tune(self, ctx: TuneContext) -> None:
        cfg = ctx.cfg
        datamodule = ctx.real_data()

        def build():
            generator, discriminator, meta = ctx.plain_start(self.name)
            prior = LatentPrior(generator.latent_dim, generator.num_classes, self.form,
                                self.max_shift)
            model = meta["model"]
            module = LatentPriorModule(generator, discriminator, ctx.estimator, prior, self.beta,
                                       self.lr, self.batch_size, cfg.reward, cfg.reward_lambda,
                                       model["w_fake_class"], model.get("loss", "paper"))
            return module, meta

        steps = _Steps(cfg.steps, datamodule.train_set)
        done = fit(ctx, build, steps, real=datamodule.train_set, gan=False)
        if done is not None:
            module, meta = done
            kl = float(module.prior.kl().mean().detach())
            ctx.tracker.metrics({"tune/latent/kl": kl}, step=0)
            ctx.save(Tuned(module.generator, module.discriminator, module.iteration),
                     meta["model"], sampler=sampler_state(module.sampler))


class _Steps(L.LightningDataModule):
    """One item per step (the module draws its own ε); the real set, for the watch."""

    def __init__(self, steps: int, real: Dataset) -> None:
        super().__init__()
        self.steps = steps
        self.train_set = real

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.arange(self.steps)), batch_size=1)
