"""PIRTuningModule: G climbs the frozen estimator, D keeps training, R never changes."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from pirtune.errors import UsageError
from pirtune.estimator.module import FrozenPIREstimator
from pirtune.estimator.network import bin_centres, expected_pir
from pirtune.models.acgan import render
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
    assert isinstance(g_opt, torch.optim.Adam) and isinstance(d_opt, torch.optim.RMSprop)
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
    loss, parts = module._generator_objective(fake, labels)
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
