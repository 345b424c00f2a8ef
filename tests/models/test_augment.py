"""DiffAugment's operations, the hinge loss, spectral norm and R1: what each must do."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from pirtune.models.augment import diff_augment, parse_policy
from pirtune.models.losses import discriminator_loss, generator_loss
from pirtune.models.networks import Discriminator
from pirtune.models.tuning import PIRTuningModule


def _images(n: int = 16, side: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, 3, side, side) * 1.5 + 0.25  # no zeros, so zero means "filled"


def test_translation_is_a_whole_pixel_shift_with_zero_fill():
    x = _images()
    out = diff_augment(x, ("translation",))
    shifts = set()
    for image, shifted in zip(x, out, strict=True):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(shifted, _shift(image, dy, dx))]
        assert len(matches) == 1, "each image is its own shift of the input, by ≤ 1/8 side"
        shifts.add(matches[0])
    assert len(shifts) > 3, "shifts are drawn per image"


def _shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[y, x] = image[y + dy, x + dx], zero outside: an independent reference."""
    _, h, w = image.shape
    out = torch.zeros_like(image)
    for y in range(h):
        for x in range(w):
            if 0 <= y + dy < h and 0 <= x + dx < w:
                out[:, y, x] = image[:, y + dy, x + dx]
    return out


def test_cutout_zeroes_one_square_and_keeps_the_rest():
    x = _images(64)
    out = diff_augment(x, ("cutout",))
    for image, cut in zip(x, out, strict=True):
        zero = (cut == 0).all(0)
        assert torch.equal(cut[:, ~zero], image[:, ~zero])
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert 0 < len(rows) <= 8 and 0 < len(cols) <= 8  # half the 16 px side at most
        # One axis-aligned rectangle: every pixel in its bounding box is zeroed.
        assert zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()


def test_augmentations_pass_gradients_to_the_generator():
    x = _images(8).requires_grad_(True)
    diff_augment(x, parse_policy("color,translation,cutout")).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_colour_changes_each_image_by_its_own_affine_map():
    x = _images(32)
    out = diff_augment(x, ("color",))
    assert not torch.allclose(out, x)
    means = (out - x).mean(dim=(1, 2, 3))
    assert means.std() > 0.01, "brightness is drawn per image"


def test_an_unknown_augmentation_is_named():
    with pytest.raises(ValueError, match="'blur'.*color, translation, cutout"):
        parse_policy("translation,blur")


def test_hinge_losses_match_the_formula():
    real, fake = torch.tensor([0.3, 1.7]), torch.tensor([-0.4, -1.5])
    logits, labels = torch.zeros(2, 2), torch.tensor([0, 1])
    d = discriminator_loss(real, fake, logits, labels, w_real_class=1.0, loss="hinge")
    assert d.real.item() == pytest.approx((0.7 + 0.0) / 2)
    assert d.fake.item() == pytest.approx((0.6 + 0.0) / 2)
    g = generator_loss(fake, logits, labels, w_fake_class=0.0, loss="hinge")
    assert g.total.item() == pytest.approx(0.95)


def test_spectral_norm_bounds_every_layer_of_the_discriminator():
    torch.manual_seed(0)
    d = Discriminator(num_classes=2, resolution=16, width=0.125, dropout=0.0, norm="spectral")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    d.train()
    for _ in range(30):  # power iterations run on each training forward pass
        d(torch.randn(4, 3, 16, 16))
    d.eval()
    for name, module in d.named_modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            sigma = torch.linalg.matrix_norm(module.weight.flatten(1), ord=2)
            assert sigma.item() == pytest.approx(1.0, abs=0.05), name


def test_r1_changes_the_discriminator_update(make_cfg):
    """The same seeded step with and without R1: D moves differently, and d_r1 is logged."""
    moved = {}
    for gamma in (0.0, 10.0):
        cfg = make_cfg(f"model.r1_gamma={gamma}", "model.loss=hinge",
                       "model.augment='translation,cutout'", "model.discriminator.norm=spectral")
        L.seed_everything(0, verbose=False)
        module = instantiate(cfg.model)
        datamodule = instantiate(cfg.data)
        trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            log_every_n_steps=1)
        trainer.fit(module, datamodule=datamodule)
        moved[gamma] = torch.cat([p.detach().flatten() for p in module.discriminator.parameters()])
        if gamma:
            assert trainer.logged_metrics["pretrain/train/d_r1"] > 0
    assert not torch.allclose(moved[0.0], moved[10.0])


def test_tuning_trains_d_as_the_bundle_was_trained(make_cfg, tiny_generator, monkeypatch):
    """A bundle's loss, augmentation and R1 carry into tuning; old bundles get the paper's."""
    monkeypatch.setattr(PIRTuningModule, "__init__", lambda self, *a, **kw: setattr(self, "kw", kw))
    from pirtune.models import tuning

    real_load = tuning.load_bundle

    def loader(**changes):
        def load(path):
            g, d, meta = real_load(path)
            model = {k: v for k, v in meta["model"].items()
                     if k not in ("loss", "augment", "r1_gamma")}  # a bundle from before them
            meta["model"] = {**model, **changes}
            return g, d, meta
        return load

    monkeypatch.setattr(tuning, "load_bundle", loader())
    module, _ = PIRTuningModule.from_bundle(str(tiny_generator), estimator=None, lr=1e-6)
    assert (module.kw["loss"], module.kw["augment"], module.kw["r1_gamma"]) == ("paper", None, 0.0)
    monkeypatch.setattr(tuning, "load_bundle",
                        loader(loss="hinge", augment="cutout", r1_gamma=2.0))
    module, _ = PIRTuningModule.from_bundle(str(tiny_generator), estimator=None, lr=1e-6)
    kw = module.kw
    assert (kw["loss"], kw["augment"], kw["r1_gamma"]) == ("hinge", "cutout", 2.0)
