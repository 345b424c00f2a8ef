"""The PIR estimator R: image → PIR, as a classifier over PIR bins (2.3, C.3).

The paper predicts PIR by classifying into 100 equal bins on [0, 1] with a
softmax, because a scalar regressor struggled with multi-modal PIR
distributions. The estimate is the expected bin centre under that softmax,
at temperature 1 while training and 0.01 when the frozen estimator is used
(``expected_pir``).

Backbones: ``small_cnn`` (a few conv blocks, the CPU default),
``small_cnn_coord`` (the same with the pixel's position as two more input
channels), ``resnet18`` and ``inception_v3`` (torchvision). Pretrained
ImageNet weights are read only from the local torch hub cache; nothing is
downloaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from pirtune.errors import UsageError
from pirtune.pretrained import IMAGENET_MEAN, IMAGENET_STD, hub_cache_path

BACKBONES = ("small_cnn", "small_cnn_coord", "resnet18", "inception_v3")
PAPER_BINS = 100  # C.3
INCEPTION_SIZE = 299
# PIR units. A ratio k/n stored as float32 can sit ~1e-8 below the edge k/n is on;
# this nudge puts it back in its own bin (only PIRs within 1e-6 of an edge move).
_EDGE_TOLERANCE = 1e-6


def pir_to_bin(pir: torch.Tensor, bins: int = PAPER_BINS) -> torch.Tensor:
    """Bin index of each PIR: bin i covers [i/bins, (i+1)/bins), and 1.0 is in the last.

    Args:
        pir: PIRs [N] in [0, 1]; values outside are clamped to the end bins.
        bins: number of equal bins on [0, 1].

    Returns:
        int64 [N] in [0, bins - 1].
    """
    index = torch.floor((pir.to(torch.float64) + _EDGE_TOLERANCE) * bins)
    return index.clamp(0, bins - 1).to(torch.int64)


def bin_centres(bins: int = PAPER_BINS, device: torch.device | str | None = None) -> torch.Tensor:
    """The centre of each PIR bin, float32 [bins]: (i + 0.5) / bins."""
    return (torch.arange(bins, dtype=torch.float32, device=device) + 0.5) / bins


def expected_pir(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Expected PIR under the bin softmax at ``temperature`` (C.3): Σ softmax(logits/T)·centre.

    A low temperature (the paper's 0.01) makes this nearly the modal bin's
    centre; temperature 1 is the distribution the estimator was trained on.

    Args:
        logits: [B, bins].
        temperature: softmax temperature, > 0.

    Returns:
        Estimated PIR [B] in [0.5/bins, 1 - 0.5/bins], differentiable in ``logits``.
    """
    if not temperature > 0:
        raise UsageError(f"temperature={temperature} must be positive (the paper uses 0.01)")
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # [B, bins]
    return probs @ bin_centres(logits.shape[-1], device=logits.device)  # [B]


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Sequential):
    """Four conv-BN-ReLU blocks, global average pool, dropout, linear: fast on 32×32 CPU."""

    def __init__(self, bins: int, width: int = 32, dropout: float = 0.2,
                 channels: int = 3) -> None:
        super().__init__(
            _conv_block(channels, width, 1),       # [B, 3, R, R] -> [B, 32, R, R]
            _conv_block(width, 2 * width, 2),      # -> [B, 64, R/2, R/2]
            _conv_block(2 * width, 4 * width, 2),  # -> [B, 128, R/4, R/4]
            _conv_block(4 * width, 4 * width, 2),  # -> [B, 128, R/8, R/8]
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),                          # -> [B, 128]
            nn.Dropout(dropout),
            nn.Linear(4 * width, bins),            # -> [B, bins]
        )


class CoordSmallCNN(SmallCNN):
    """SmallCNN that also sees where each pixel is: x and y in [-1, 1] as two input channels
    (CoordConv, Liu et al. 2018).

    A global average pool leaves SmallCNN only what zero padding tells it about
    position, so it learns an objective such as "left half green, right half red"
    mostly as the colour statistics it shares with its mirror image (their values
    correlate at 0.985 on the shipped generator's samples). With the coordinates
    the first layer can weigh a colour by its side: on the tuning frontier's
    color_green_red data (``scripts/bench/split_probe.py``, seeds 0–2) the part of
    the estimate beyond the mirrored objective followed the split with Spearman
    0.45 against 0.35–0.38 without them; the observed PIR's own, 0.55–0.59, bounds
    what any estimator can reach on these data.
    """

    def __init__(self, bins: int) -> None:
        super().__init__(bins, channels=5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        xs = torch.linspace(-1, 1, w, device=images.device, dtype=images.dtype)
        ys = torch.linspace(-1, 1, h, device=images.device, dtype=images.dtype)
        grid = torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)])
        return super().forward(torch.cat([images, grid.expand(b, 2, h, w)], dim=1))


def _hub_weights(url: str, backbone: str) -> dict[str, torch.Tensor]:
    """Loads torchvision weights from the local hub cache, never from the network."""
    path = hub_cache_path(url)
    if not path.is_file():
        raise UsageError(
            f"estimator.network.pretrained=true needs the ImageNet weights of {backbone} at {path} "
            f"(download {url} there on a machine with internet), or set "
            "estimator.network.pretrained=false to train from scratch"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise UsageError(f"cannot read {path} ({err}); download it again from {url}") from err


def _resnet18(bins: int, pretrained: bool) -> nn.Module:
    net = models.resnet18(weights=None)
    if pretrained:
        net.load_state_dict(_hub_weights(models.ResNet18_Weights.IMAGENET1K_V1.url, "resnet18"))
    net.fc = nn.Linear(net.fc.in_features, bins)  # [B, 512] -> [B, bins]
    return net


def _inception_v3(bins: int, pretrained: bool) -> nn.Module:
    # transform_input: the ported Google weights expect inputs in [-1, 1]; torchvision
    # maps ImageNet-normalised inputs there when this is on, as its own builder does.
    net = models.inception_v3(weights=None, aux_logits=False, init_weights=not pretrained,
                              transform_input=pretrained)
    if pretrained:
        state = _hub_weights(models.Inception_V3_Weights.IMAGENET1K_V1.url, "inception_v3")
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith("AuxLogits.")})
    net.fc = nn.Linear(net.fc.in_features, bins)  # [B, 2048] -> [B, bins]
    return net


class PIREstimator(nn.Module):
    """Maps images to logits over PIR bins (2.3, C.3).

    The paper uses Inception v2 initialised from a pretrained model;
    torchvision has no Inception v2, and ``inception_v3`` (the same paper,
    Szegedy et al. 2016, with factorised 7×7 convolutions and a BN auxiliary
    head, here dropped) is the closest it offers.

    Args:
        backbone: one of ``small_cnn``, ``small_cnn_coord``, ``resnet18``,
            ``inception_v3``.
        bins: PIR bins of the softmax head (paper: 100).
        resolution: side the images are resized to (bilinear) before
            ``small_cnn`` or ``resnet18`` when they arrive at another size, so an
            estimator trained at 32 px scores 64 px generator samples the same
            way; ``inception_v3`` always sees 299×299.
        pretrained: start ``resnet18``/``inception_v3`` from torchvision's ImageNet
            weights, read from ``<torch hub dir>/checkpoints/``.
    """

    def __init__(self, backbone: str = "small_cnn", bins: int = PAPER_BINS,
                 resolution: int = 32, pretrained: bool = False) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise UsageError(
                f"estimator backbone {backbone!r} is unknown; choose one of: "
                f"{', '.join(BACKBONES)}"
            )
        if bins < 2:
            raise UsageError(f"bins={bins} must be at least 2 (the paper uses {PAPER_BINS})")
        if resolution < 8:
            raise UsageError(f"resolution={resolution} must be at least 8 pixels")
        if pretrained and backbone.startswith("small_cnn"):
            raise UsageError(
                f"{backbone} has no pretrained weights; set estimator.network.pretrained=false or "
                "choose backbone resnet18 or inception_v3"
            )
        self.backbone_name = backbone
        self.bins = bins
        self.resolution = INCEPTION_SIZE if backbone == "inception_v3" else resolution
        self.pretrained = pretrained
        if backbone == "small_cnn":
            self.backbone = SmallCNN(bins)
        elif backbone == "small_cnn_coord":
            self.backbone = CoordSmallCNN(bins)
        elif backbone == "resnet18":
            self.backbone = _resnet18(bins, pretrained)
        else:
            self.backbone = _inception_v3(bins, pretrained)
        # The ImageNet backbones get the statistics their weights assume; small_cnn
        # gets [-1, 1], the range the generator works in.
        imagenet = not backbone.startswith("small_cnn")
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else ((0.5,) * 3, (0.5,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images float [B, 3, H, W] in [0, 1] → logits [B, bins]."""
        if images.shape[-2:] != (self.resolution, self.resolution):
            images = F.interpolate(images, size=(self.resolution, self.resolution),
                                   mode="bilinear", align_corners=False, antialias=True)
        return self.backbone((images - self.mean) / self.std)
