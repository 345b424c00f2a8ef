"""PIR bins, the temperature-scaled expectation, and the three backbones."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision import models

from pirtune.errors import UsageError
from pirtune.estimator.network import (
    PIREstimator,
    bin_centres,
    expected_pir,
    pir_to_bin,
)


def test_pir_to_bin_edges():
    pir = torch.tensor([0.0, 0.0099, 0.01, 0.015, 0.5, 0.999, 1.0])
    torch.testing.assert_close(pir_to_bin(pir, 100), torch.tensor([0, 0, 1, 1, 50, 99, 99]))
    # Ratios of counts land in the bin their exact value belongs to.
    ratios = torch.tensor([10 / 1000, 290 / 1000, 7 / 100, 999 / 1000], dtype=torch.float32)
    torch.testing.assert_close(pir_to_bin(ratios, 100), torch.tensor([1, 29, 7, 99]))
    torch.testing.assert_close(pir_to_bin(torch.tensor([0.0, 0.25, 1.0]), 4),
                               torch.tensor([0, 1, 3]))


def test_bin_centres():
    torch.testing.assert_close(bin_centres(4), torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert bin_centres(100)[0].item() == pytest.approx(0.005)


def test_expected_pir_at_temperature_one_is_the_softmax_mean():
    logits = torch.tensor([[0.3, -1.0, 2.0, 0.5]])
    weights = [math.exp(v) for v in logits[0].tolist()]
    centres = [0.125, 0.375, 0.625, 0.875]
    hand = sum(w * c for w, c in zip(weights, centres, strict=True)) / sum(weights)
    assert expected_pir(logits, 1.0).item() == pytest.approx(hand, rel=1e-6)


def test_low_temperature_approaches_the_modal_bin_centre():
    logits = torch.randn(5, 100, generator=torch.Generator().manual_seed(0)) * 3
    argmax_centre = bin_centres(100)[logits.argmax(1)]
    torch.testing.assert_close(expected_pir(logits, 1e-4), argmax_centre)
    assert not torch.allclose(expected_pir(logits, 1.0), argmax_centre, atol=1e-3)


def test_low_temperature_ignores_the_smaller_mode():
    # Two modes: bin 10 (most likely) and bin 80 slightly behind. At T=1 the
    # mean sits between them; at the paper's 0.01 it is near bin 10's centre.
    logits = torch.full((1, 100), -5.0)
    logits[0, 10], logits[0, 80] = 2.0, 1.9
    sharp, soft = expected_pir(logits, 0.01).item(), expected_pir(logits, 1.0).item()
    mode_centre = 0.105
    assert abs(sharp - mode_centre) < 1e-3
    assert abs(soft - mode_centre) > 0.2
    assert 0.105 < soft < 0.805


def test_expected_pir_rejects_non_positive_temperature():
    with pytest.raises(UsageError, match="temperature=0"):
        expected_pir(torch.zeros(1, 4), 0)


# What each backbone's weights expect: ImageNet statistics, or [-1, 1] for small_cnn.
INPUT_STATS = {"small_cnn": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
               "small_cnn_coord": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
               "resnet18": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
               "inception_v3": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


@pytest.mark.parametrize("backbone, size, seen", [("small_cnn", 32, 32), ("small_cnn", 64, 32),
                                                  ("small_cnn_coord", 64, 32),
                                                  ("resnet18", 32, 32),
                                                  ("inception_v3", 32, 299)])
def test_backbone_sees_the_normalised_image_at_its_own_size(backbone, size, seen):
    net = PIREstimator(backbone, bins=100, resolution=32).eval()
    inputs = []
    net.backbone.register_forward_pre_hook(lambda _module, args: inputs.append(args[0]))
    # One flat colour per image: resizing leaves it flat, so the backbone's input is known
    # exactly, whatever the size.
    colours = torch.tensor([[0.2, 0.5, 0.9], [0.7, 0.1, 0.3]])
    images = colours[:, :, None, None].expand(2, 3, size, size)
    with torch.no_grad():
        logits = net(images)
    assert logits.shape == (2, 100)
    assert not torch.allclose(logits[0], logits[1])  # the estimate depends on the image
    mean, std = (torch.tensor(v) for v in INPUT_STATS[backbone])
    [seen_input] = inputs
    expected = ((colours - mean) / std)[:, :, None, None].expand(2, 3, seen, seen)
    torch.testing.assert_close(seen_input, expected, rtol=0, atol=1e-5)


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(UsageError, match="'vgg' is unknown; choose one of: small_cnn, "
                                         "small_cnn_coord, resnet18, inception_v3"):
        PIREstimator("vgg")


def test_pretrained_weights_come_only_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    expected = tmp_path / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(UsageError, match=rf"{expected}.*estimator\.network\.pretrained=false"):
        PIREstimator("resnet18", pretrained=True)

    # A stand-in for the ImageNet file: random weights in torchvision's layout.
    expected.parent.mkdir()
    imagenet = models.resnet18(weights=None).state_dict()
    torch.save(imagenet, expected)
    net = PIREstimator("resnet18", bins=10, pretrained=True)
    torch.testing.assert_close(net.backbone.conv1.weight, imagenet["conv1.weight"])
    torch.testing.assert_close(net.backbone.layer4[1].bn2.running_var,
                               imagenet["layer4.1.bn2.running_var"])
    assert net.backbone.fc.out_features == 10


def test_pretrained_inception_drops_the_auxiliary_head(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = tmp_path / "checkpoints" / "inception_v3_google-0cc3c7bd.pth"
    path.parent.mkdir()
    # torchvision's file includes the auxiliary classifier, which the estimator drops.
    google = models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    assert any(k.startswith("AuxLogits.") for k in google)
    torch.save(google, path)
    net = PIREstimator("inception_v3", bins=10, pretrained=True)
    torch.testing.assert_close(net.backbone.Mixed_7c.branch_pool.conv.weight,
                               google["Mixed_7c.branch_pool.conv.weight"])
    assert net.backbone.transform_input  # the Google weights expect inputs in [-1, 1]


@pytest.mark.parametrize("backbone", ["small_cnn", "small_cnn_coord"])
def test_small_cnn_has_no_pretrained_weights(backbone):
    with pytest.raises(UsageError, match=rf"{backbone} has .*estimator\.network\.pretrained=false"):
        PIREstimator(backbone, pretrained=True)


def test_the_coordinate_backbone_tells_a_colour_on_the_left_from_the_same_on_the_right():
    """Images whose only difference is the side of a red patch: the same colour statistics.
    small_cnn_coord, which sees the pixel's position, must learn which side scores high."""
    torch.manual_seed(0)
    n, size = 256, 16
    images = torch.full((n, 3, size, size), 0.5)
    right = torch.rand(n) < 0.5
    for i in range(n):
        row, col = torch.randint(0, size - 6, (2,)).tolist()
        col = col % (size // 2 - 6) + (size // 2 if right[i] else 0)
        images[i, :, row:row + 6, col:col + 6] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    target = torch.where(right, 80, 20)    # bin 80 on the right, 20 on the left
    net = PIREstimator("small_cnn_coord", bins=100, resolution=size)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(6):
        for batch in torch.randperm(n).split(32):
            loss = torch.nn.functional.cross_entropy(net(images[batch]), target[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        estimate = expected_pir(net.eval()(images), 0.01)
    accuracy = ((estimate > 0.5) == right).float().mean().item()
    assert accuracy > 0.9, accuracy
    # What the first convolution sees: the normalised image, then x (along the width) and
    # y (along the height), each from -1 to 1.
    seen = []
    net.backbone[0].register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    with torch.no_grad():
        net(images[:2])
    ramp = torch.linspace(-1, 1, size)
    torch.testing.assert_close(seen[0][:, :3], (images[:2] - 0.5) / 0.5)
    torch.testing.assert_close(seen[0][:, 3], ramp.expand(2, size, size))
    torch.testing.assert_close(seen[0][:, 4], ramp[:, None].expand(2, size, size))
