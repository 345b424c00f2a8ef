"""PIRTuningModule: G climbs the frozen estimator, D keeps training, R never changes."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from pirtune.errors import UsageError
from pirtune.estimator.ensemble import FrozenPIREnsemble
from pirtune.estimator.frozen import FrozenPIREstimator
from pirtune.estimator.network import bin_centres, expected_pir
from pirtune.models.bundle import render
from pirtune.models.tuning import PIRTuningModule


class BlueBins(nn.Module):
    """A stand-in estimator whose estimate is an image's mean blue (after a learnable 1×1 mix).

    Logits peak at the bin nearest the blue mean, so the expected PIR at any
    temperature tracks it; the mix and the batch norm give R parameters and
    buffers that tuning must leave alone.
    """

    bins = 100

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.mix.bias.zero_()
        self.norm = nn.BatchNorm1d(1, affine=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        blue = self.mix(images)[:, 2].mean((1, 2))  # [B]
        blue = blue + 0 * self.norm(blue[:, None])[:, 0]  # touches the norm, not the value
        centres = bin_centres(self.bins, device=images.device)
        return -((centres[None] - blue[:, None]) ** 2) * 1e3  # [B, bins]


@pytest.fixture
def tiny_bundle(make_cfg, tiny_generator):
    """The suite's pre-trained TINY generator, and the config of the data it learned."""
    return make_cfg(), tiny_generator


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_tuning_moves_the_generator_towards_higher_estimated_pir(tiny_bundle):
    cfg, bundle = tiny_bundle
    estimator = FrozenPIREstimator(BlueBins(), temperature=0.01)
    module, meta = PIRTuningModule.from_bundle(str(bundle), estimator, lr=2e-3, w_pir=1000)
    assert meta["format"] == "pirtune-acgan-bundle/1"
    # The bundle's optimiser types and betas, at the tuning learning rate.
    d_opt, g_opt = module.configure_optimizers()
    trained_with = meta["model"]["d_optimizer"]["_target_"].rsplit(".", 1)[1]
    assert isinstance(g_opt, torch.optim.Adam) and type(d_opt).__name__ == trained_with
    assert g_opt.defaults["lr"] == d_opt.defaults["lr"] == 2e-3
    assert g_opt.defaults["betas"] == (0.5, 0.999)

    rng = torch.Generator().manual_seed(0)
    z = torch.randn(64, module.latent_dim, generator=rng)
    labels = torch.arange(64) % module.num_classes
    before = estimator(render(module.generator, z, labels)).mean()
    g0, d0, r0 = (_snapshot(module.generator), _snapshot(module.discriminator),
                  _snapshot(estimator))

    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_steps=2 * 15, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=instantiate(cfg.data))

    after = estimator(render(module.generator, z, labels)).mean()
    assert after > before + 0.02, (before, after)
    for name, network, start in (("generator", module.generator, g0),
                                 ("discriminator", module.discriminator, d0)):
        params = dict(network.named_parameters())
        still = [k for k in params if torch.equal(params[k].detach(), start[k])]
        assert not still, f"{name} parameters that did not move: {still}"
    # Every tensor of R (weights and buffers) is exactly as it was.
    for key, value in estimator.state_dict().items():
        assert torch.equal(value, r0[key]), key
    assert not any(p.requires_grad for p in estimator.parameters())
    assert module.estimator is estimator and module.estimator.network.training is False


def test_the_loss_is_the_gan_loss_minus_weighted_estimate(tiny_bundle):
    _, bundle = tiny_bundle
    estimator = FrozenPIREstimator(BlueBins(), temperature=0.01)
    module, _ = PIRTuningModule.from_bundle(str(bundle), estimator, lr=1e-4, w_pir=250)
    plain, _ = PIRTuningModule.from_bundle(str(bundle), estimator, lr=1e-4, w_pir=0)
    fake = torch.rand(6, 3, 16, 16) * 2 - 1
    labels = torch.arange(6) % 2
    module.eval(), plain.eval()  # dropout off, so both see the same discriminator output
    torch.manual_seed(0)  # the same DiffAugment draw for both objectives
    loss, parts = module._generator_objective(fake, labels)
    torch.manual_seed(0)  # the same DiffAugment draw for both objectives
    gan_loss, _ = plain._generator_objective(fake, labels)
    estimate = expected_pir(estimator.network((fake + 1) / 2), 0.01).mean()
    torch.testing.assert_close(parts["estimated_pir"], estimate)
    torch.testing.assert_close(loss, gan_loss - 250 * estimate)


def test_bad_tuning_settings_are_refused(tiny_bundle):
    _, bundle = tiny_bundle
    with pytest.raises(UsageError, match="w_pir=-1 must be at least 0"):
        PIRTuningModule.from_bundle(str(bundle), FrozenPIREstimator(BlueBins()), 1e-4, w_pir=-1)
    with pytest.raises(UsageError, match="FrozenPIREstimator"):
        PIRTuningModule.from_bundle(str(bundle), BlueBins(), 1e-4)


# -- beyond the paper: ensembles, the conservative reward, the anchor (issue 16) ------------

class ShiftedBlueBins(BlueBins):
    """BlueBins whose estimate is shifted by ``shift``: ensemble members that disagree."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        blue = images[:, 2].mean((1, 2)) + self.shift  # [B]
        centres = bin_centres(self.bins, device=images.device)
        return -((centres[None] - blue[:, None]) ** 2) * 1e3


def test_the_conservative_reward_is_the_members_mean_minus_lambda_sd(tiny_bundle):
    _, bundle = tiny_bundle
    shifts = (0.0, 0.05, 0.2)
    ensemble = FrozenPIREnsemble([ShiftedBlueBins(s) for s in shifts], temperature=0.01)
    module, _ = PIRTuningModule.from_bundle(str(bundle), ensemble, lr=1e-4, w_pir=100,
                                            reward="conservative", reward_lambda=0.7)
    images = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    reward, members = module.rewards(images)
    # Independently: each member's expected bin centre, in numpy.
    logits = np.stack([ShiftedBlueBins(s)(images).numpy() for s in shifts])  # [K, B, bins]
    probs = np.exp((logits - logits.max(-1, keepdims=True)) / 0.01)
    probs /= probs.sum(-1, keepdims=True)
    estimates = probs @ ((np.arange(100) + 0.5) / 100)                       # [K, B]
    np.testing.assert_allclose(members.numpy(), estimates, rtol=1e-5, atol=1e-6)
    expected = estimates.mean(0) - 0.7 * estimates.std(0)  # numpy's std: divisor K
    np.testing.assert_allclose(reward.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert float(members.std(0).mean()) > 0.01  # the members do disagree

    fake = images * 2 - 1
    module.eval()
    torch.manual_seed(0)  # the same DiffAugment draw for both objectives
    loss, parts = module._generator_objective(fake, torch.arange(5) % 2)
    plain, _ = PIRTuningModule.from_bundle(str(bundle), ensemble, lr=1e-4, w_pir=0)
    plain.eval()
    torch.manual_seed(0)  # the same DiffAugment draw for both objectives
    gan_loss, _ = plain._generator_objective(fake, torch.arange(5) % 2)
    torch.testing.assert_close(loss, gan_loss - 100 * torch.tensor(expected.mean(),
                                                                   dtype=torch.float32))
    torch.testing.assert_close(parts["reward"], torch.tensor(expected.mean(),
                                                             dtype=torch.float32))


def test_the_mean_reward_of_an_ensemble_is_the_members_mean(tiny_bundle):
    _, bundle = tiny_bundle
    ensemble = FrozenPIREnsemble([ShiftedBlueBins(s) for s in (0.0, 0.1)], temperature=0.01)
    module, _ = PIRTuningModule.from_bundle(str(bundle), ensemble, lr=1e-4)
    images = torch.rand(4, 3, 16, 16)
    reward, members = module.rewards(images)
    torch.testing.assert_close(reward, members.mean(0))
    torch.testing.assert_close(ensemble(images), members.mean(0))
    with pytest.raises(UsageError, match="tune.reward=conservative needs an ensemble"):
        PIRTuningModule.from_bundle(str(bundle), FrozenPIREstimator(BlueBins()), 1e-4,
                                    reward="conservative")


def _anchor_gradient(module: PIRTuningModule, z: torch.Tensor, labels: torch.Tensor):
    module.generator.zero_grad(set_to_none=True)
    module.step_latents = (z, labels)
    distance = module.anchor_distance(module.generator(z, labels))
    distance.backward()
    grads = [p.grad for p in module.generator.parameters() if p.grad is not None]
    return distance.detach(), torch.cat([g.flatten() for g in grads])


@pytest.mark.parametrize("space", ["pixels", "features"])
def test_the_anchor_gradient_is_zero_at_the_start_and_not_after_g_moves(tiny_bundle, space):
    _, bundle = tiny_bundle
    module, _ = PIRTuningModule.from_bundle(str(bundle), FrozenPIREstimator(BlueBins()), 1e-4,
                                            anchor=10.0, anchor_space=space)
    module.train()  # batch norm on batch statistics in G and in G₀ alike, as in a step
    rng = torch.Generator().manual_seed(0)
    z = torch.randn(8, module.latent_dim, generator=rng)
    labels = torch.arange(8) % module.num_classes
    distance, grad = _anchor_gradient(module, z, labels)
    assert float(distance) == 0.0
    assert grad.abs().max() == 0.0
    with torch.no_grad():
        for p in module.generator.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=rng))
    distance, grad = _anchor_gradient(module, z, labels)
    assert float(distance) > 0 and grad.abs().max() > 0
    # G₀ stayed where tuning started; the encoder of the feature space is frozen too.
    assert not any(p.requires_grad for p in module.anchor_generator.parameters())
    if space == "features":
        assert module.anchor_features.network.training is False


def test_the_anchor_adds_its_weighted_distance_to_the_loss(tiny_bundle):
    _, bundle = tiny_bundle
    estimator = FrozenPIREstimator(BlueBins())
    anchored, _ = PIRTuningModule.from_bundle(str(bundle), estimator, 1e-4, anchor=3.0)
    plain, _ = PIRTuningModule.from_bundle(str(bundle), estimator, 1e-4)
    anchored.eval(), plain.eval()
    z = torch.randn(4, anchored.latent_dim)
    labels = torch.arange(4) % 2
    anchored.step_latents = (z, labels)
    fake = torch.rand(4, 3, 16, 16) * 2 - 1  # not G₀'s output: a nonzero distance
    torch.manual_seed(0)  # the same DiffAugment draw for both objectives
    loss, parts = anchored._generator_objective(fake, labels)
    torch.manual_seed(0)  # the same DiffAugment draw for both objectives
    base, _ = plain._generator_objective(fake, labels)
    reference = (anchored.anchor_generator(z, labels).clamp(-1, 1) + 1) / 2
    distance = ((fake + 1) / 2 - reference).pow(2).mean()
    torch.testing.assert_close(parts["anchor_distance"], distance)
    torch.testing.assert_close(loss, base + 3.0 * distance)
    with pytest.raises(UsageError, match="anchor_space='latent' is unknown"):
        PIRTuningModule.from_bundle(str(bundle), estimator, 1e-4, anchor=1.0,
                                    anchor_space="latent")
