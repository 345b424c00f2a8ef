"""The landscape encoder: the shipped weights, what its feature space sees, training, and
the feature networks by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage
import torch
from torchvision import models

from pirtune.errors import UsageError
from pirtune.metrics import (
    FEATURES,
    LandscapeEncoder,
    blur,
    class_accuracy,
    colour_shift,
    extract,
    feature_network,
    fid,
    fid_from_features,
    floor,
    load_encoder,
    quality,
)
from pirtune.metrics import encoder as enc
from pirtune.metrics.encoder_training import encoder_loss, evaluate, scenes, train_encoder
from pirtune.metrics.features import InceptionFeatures, inception_cache_path

# Fresh scenes: the encoder trained on seeds from 10,000,000 and was evaluated on seeds
# from 20,000,000 (see src/pirtune/checkpoints/encoder-cpu.json).
TEST_SEED = 30_000_000
PER_SPLIT = 500


@pytest.fixture(scope="module")
def encoder() -> LandscapeEncoder:
    return load_encoder()


@pytest.fixture(scope="module")
def splits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two disjoint sets of fresh real 32 px scenes (classes alternating), and their labels."""
    images, labels = scenes(TEST_SEED, 2 * PER_SPLIT)
    return images[:PER_SPLIT], images[PER_SPLIT:], labels[PER_SPLIT:]


@pytest.fixture(scope="module")
def real_features(encoder, splits) -> tuple[torch.Tensor, torch.Tensor]:
    return extract(encoder, splits[0]), extract(encoder, splits[1])


def test_shipped_encoder_is_small_and_gives_its_features(encoder):
    provenance = json.loads(enc.SHIPPED.with_suffix(".json").read_text())
    parameters = sum(p.numel() for p in encoder.parameters())
    assert parameters == provenance["parameters"]
    assert parameters < 1_000_000
    assert enc.SHIPPED.stat().st_size < 5_000_000
    assert not any(p.requires_grad for p in encoder.parameters())
    images = torch.rand(3, 3, 32, 32)
    assert encoder(images).shape == (3, encoder.feature_dim) == (3, 128)
    assert encoder.classifier(images).shape == (3, 2)
    heads = encoder.heads(images)
    assert heads["augmentation"].shape == (3, len(enc.TARGETS))
    assert heads["layout"].shape == (3, 48)
    # Any size is read at 32 px: a 64 px image gives the features of its 32 px version.
    big = torch.nn.functional.interpolate(images, scale_factor=2, mode="nearest")
    assert encoder(big).shape == (3, 128)


def test_class_and_blur_are_read_on_fresh_scenes(encoder, splits):
    _, images, labels = splits
    accuracy = class_accuracy(encoder.classifier, images, labels)
    # Measured 0.996 on 4,000 held-out scenes at shipping (encoder-cpu.json beside the weights).
    assert min(accuracy.values()) > 0.97
    held_out = evaluate(encoder, images[:200], labels[:200])
    assert held_out.blur_mae_px < 0.15


def test_blur_and_colour_shift_stand_far_above_the_real_floor(encoder, splits, real_features):
    _, others, _ = splits
    a, b = real_features
    # Paired: every set below is the second real split, changed, against the same first one.
    floor_fid = fid_from_features(a, b)
    blurred = {s: fid_from_features(a, extract(encoder, blur(others, s))) for s in (0.5, 1.0)}
    n = len(others)
    tinted = colour_shift(others, torch.tensor([0.05, 0.0, -0.05]).expand(n, 3), torch.zeros(n))
    shifted = fid_from_features(a, extract(encoder, tinted))
    # At 500 images a set the floor is mostly finite-sample bias (1.37 here, 0.28 at 2,000
    # images); measured at shipping: σ = 0.5 px 2.35, σ = 1 px 14.6, the tint 2.77.
    assert blurred[0.5] > 1.5 * floor_fid
    assert blurred[1.0] > 4 * blurred[0.5]
    assert shifted > 1.5 * floor_fid


def test_default_network_is_the_encoder_with_its_class_head(encoder, splits):
    real, others, labels = splits
    scored = quality(real[:100], others[:100], fake_labels=labels[:100], kid_subsets=5)
    assert scored.fid == pytest.approx(fid(real[:100], others[:100], encoder), rel=1e-9)
    assert scored.class_accuracy == class_accuracy(encoder.classifier, others[:100],
                                                   labels[:100])


def test_floor_splits_a_class_sorted_set_into_alike_halves(encoder, splits):
    _, others, labels = splits
    order = labels.argsort(stable=True)
    order = torch.cat([order[:100], order[-100:]])  # 100 coasts, then 100 mountains
    images, labels = others[order], labels[order]
    base = floor(images, encoder, labels=labels, kid_subsets=5)
    assert set(base.class_accuracy) == {0, 1}
    assert base.fid < fid(images[:100], images[100:], encoder) / 5


def test_fid_leaves_the_network_as_it_was(splits):
    network = LandscapeEncoder().eval()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    fid(splits[0][:20], splits[1][:20], network)
    after = network.state_dict()
    assert all(after[k].dtype == v.dtype for k, v in before.items())
    for k, v in before.items():
        torch.testing.assert_close(after[k], v)


@pytest.mark.parametrize("sigma", [0.3, 0.8, 1.5])
def test_blur_matches_scipy(sigma):
    images = torch.rand(2, 3, 12, 12)
    expected = scipy.ndimage.gaussian_filter(images.double().numpy(), sigma=(0, 0, sigma, sigma),
                                             mode="mirror", truncate=4 / sigma)
    torch.testing.assert_close(blur(images, sigma).double(), torch.from_numpy(expected),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(blur(images, 0.0), images)


def test_augment_reports_what_it_did():
    images = torch.rand(64, 3, 16, 16)
    rng = torch.Generator().manual_seed(0)
    plain, targets = enc.augment(images, rng, p_blur=0, p_colour=0, p_noise=0)
    assert torch.all(targets == 0)
    assert all(torch.equal(x, y) or torch.equal(x, y.flip(-1))
               for x, y in zip(plain, images, strict=True))
    out, targets = enc.augment(images, torch.Generator().manual_seed(1), p_blur=1, p_colour=1,
                               p_noise=0)
    truth = enc.natural_targets(targets)
    assert truth[:, 0].min() > 0 and truth[:, 0].max() <= enc.MAX_BLUR_SIGMA
    for image, shown, (sigma, *gain, brightness, noise) in zip(images, out, truth, strict=True):
        assert noise == 0

        def redo(x, sigma=sigma, gain=gain, brightness=brightness):
            return blur(colour_shift(x[None], torch.stack(gain)[None], brightness[None]), sigma)

        assert (torch.allclose(redo(image)[0], shown, atol=1e-5)
                or torch.allclose(redo(image.flip(-1))[0], shown, atol=1e-5))


def test_training_moves_every_head():
    images, labels = scenes(0, 16, resolution=16)
    images = torch.nn.functional.interpolate(images, size=32, mode="nearest")
    torch.manual_seed(0)
    start = LandscapeEncoder(width=4, feature_dim=8)
    before = {k: v.clone() for k, v in start.state_dict().items()}
    trained = train_encoder(images, labels, steps=3, batch_size=8, seed=0, encoder=start)
    for name in ("trunk.0.weight", "class_head.weight", "augmentation_head.weight",
                 "layout_head.weight"):
        assert not torch.allclose(trained.state_dict()[name], before[name]), name
    loss = encoder_loss(trained, images, labels, torch.zeros(16, len(enc.TARGETS)))
    assert torch.isfinite(loss.total)


def test_saved_encoder_round_trips(tmp_path):
    encoder = LandscapeEncoder(width=4, feature_dim=8).eval()
    enc.save_encoder(encoder, tmp_path / "e.pt", {"seed": 0})
    loaded = load_encoder(tmp_path / "e.pt")
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(images), encoder(images))


def test_load_encoder_names_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist; train one"):
        load_encoder(tmp_path / "none.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UsageError, match="is not a landscape encoder"):
        load_encoder(tmp_path / "other.pt")


def test_unknown_feature_network_lists_the_choices():
    with pytest.raises(UsageError, match="choose one of: landscape, inception"):
        feature_network("vgg")
    assert FEATURES == ("landscape", "inception")
    assert isinstance(feature_network(), LandscapeEncoder)


def test_inception_without_cached_weights_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_download(*args, **kwargs):
        raise AssertionError("feature_network must never download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(models.Inception_V3_Weights, "get_state_dict", no_download)
    with pytest.raises(UsageError) as error:
        feature_network("inception")
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "Inception v3 ImageNet weights are missing" in message
    assert "metrics.features=landscape" in message


def test_inception_reads_cached_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    net = models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = inception_cache_path()
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    features = feature_network("inception")
    assert isinstance(features, InceptionFeatures)
    torch.testing.assert_close(features.net.Conv2d_1a_3x3.conv.weight,
                               net.Conv2d_1a_3x3.conv.weight)
    with torch.no_grad():
        out = features(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 2048)
    assert np.isfinite(out.numpy()).all()
    path.unlink()  # 100 MB: not left in pytest's kept temporary folders
