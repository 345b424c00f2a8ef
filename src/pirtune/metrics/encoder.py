"""The landscape encoder: a small CNN whose features the quality metrics are computed in.

ImageNet networks are trained to ignore what matters most when judging a
32 px generator (slight blur, a colour cast, a misplaced horizon) and their
weights are not on an offline machine. So the default feature space is
trained here, on the procedural scenes, to see exactly those things. Its
heads, all linear in the same 128 features:

* the class (coast or mountain);
* what was done to the image before it was shown, drawn at random in
  training (``augment``): the Gaussian blur σ in pixels, a per-channel gain
  and a brightness offset, the standard deviation of added pixel noise;
* the 4×4 mean-colour layout of the image as shown (48 numbers).

A generator that blurs, tints or rearranges its scenes moves its samples
along directions the features were trained to represent, so FID, KID and
the k-NN metrics see it. Images of any size are resized to 32 px first.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pirtune.errors import UsageError
from pirtune.paths import SHIPPED_ENCODER

RESOLUTION = 32
"""Side in pixels every image is resized to: the shipped generator's resolution."""

LAYOUT = 4
"""The layout head predicts the mean colour of each cell of a LAYOUT×LAYOUT grid."""

TARGETS = ("blur_sigma", "gain_r", "gain_g", "gain_b", "brightness", "noise_sd")
"""The augmentation head's outputs, in order (see ``augment``)."""

FORMAT = "pirtune-landscape-encoder/1"
SHIPPED = SHIPPED_ENCODER

# The ranges ``augment`` draws from; each head's target is divided by its scale so
# that every regression has about unit spread.
MAX_BLUR_SIGMA = 1.5   # px at 32 px
MAX_LOG_GAIN = 0.2     # per channel, natural log
MAX_BRIGHTNESS = 0.15  # added to [0, 1] pixels
MAX_NOISE_SD = 0.06
_SCALES = (MAX_BLUR_SIGMA / 2, MAX_LOG_GAIN / 2, MAX_LOG_GAIN / 2, MAX_LOG_GAIN / 2,
           MAX_BRIGHTNESS / 2, MAX_NOISE_SD / 2)


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class LandscapeEncoder(nn.Module):
    """Images [N, 3, H, W] in [0, 1] → features [N, feature_dim] (see the module docstring).

    ``forward`` gives the features; ``classifier`` maps images to class logits
    (for ``pirtune.metrics.class_accuracy``); ``heads`` gives every head's output.

    Args:
        width: channels of the first conv layers; later stages have 2× and 4×.
        feature_dim: size of the feature vector (the penultimate layer).
        num_classes: classes of the class head.
    """

    def __init__(self, width: int = 24, feature_dim: int = 128, num_classes: int = 2) -> None:
        super().__init__()
        self.config = {"width": width, "feature_dim": feature_dim, "num_classes": num_classes}
        self.trunk = nn.Sequential(
            *_block(3, width), *_block(width, width),                      # -> [N, w, 32, 32]
            nn.MaxPool2d(2),
            *_block(width, 2 * width), *_block(2 * width, 2 * width),      # -> [N, 2w, 16, 16]
            nn.MaxPool2d(2),
            *_block(2 * width, 4 * width), *_block(4 * width, 4 * width),  # -> [N, 4w, 8, 8]
            nn.MaxPool2d(2),
            *_block(4 * width, 64),                                        # -> [N, 64, 4, 4]
            nn.Flatten(),                                                  # -> [N, 1024]
            # A dense layer over the 4×4 map, not a global pool: where things are matters.
            nn.Linear(64 * 4 * 4, feature_dim),                            # -> [N, d]
            nn.ReLU(inplace=True),
        )
        self.class_head = nn.Linear(feature_dim, num_classes)
        self.augmentation_head = nn.Linear(feature_dim, len(TARGETS))
        self.layout_head = nn.Linear(feature_dim, 3 * LAYOUT * LAYOUT)
        self.feature_dim = feature_dim

    def forward(self, images: Tensor) -> Tensor:
        return self.trunk(_prepare(images))  # [N, 3, H, W] -> [N, 3, 32, 32] -> [N, d]

    @property
    def classifier(self) -> nn.Module:
        """Images → class logits [N, num_classes], sharing this encoder's weights."""
        return nn.Sequential(self, self.class_head)

    def heads(self, images: Tensor) -> dict[str, Tensor]:
        """Every head's output: ``class`` logits [N, C], ``augmentation`` [N, 6] and
        ``layout`` [N, 48], both in the scaled units of ``targets``."""
        features = self(images)
        return {"class": self.class_head(features),
                "augmentation": self.augmentation_head(features),
                "layout": self.layout_head(features)}


def _prepare(images: Tensor) -> Tensor:
    """Checked images resized to 32 px and centred (the network's input)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise UsageError(f"the landscape encoder takes images [N, 3, H, W] in [0, 1], not "
                         f"{tuple(images.shape)}")
    if images.shape[-2:] != (RESOLUTION, RESOLUTION):
        images = F.interpolate(images.float(), size=(RESOLUTION, RESOLUTION), mode="bilinear",
                               antialias=True, align_corners=False)
    return (images.float() - 0.5) / 0.25


def layout(images: Tensor) -> Tensor:
    """The 4×4 mean-colour layout of images at 32 px: [N, 48], each cell's RGB in [0, 1]."""
    return F.adaptive_avg_pool2d(_prepare(images) * 0.25 + 0.5, LAYOUT).flatten(1)


def blur(images: Tensor, sigma: Tensor | float) -> Tensor:
    """Gaussian blur of images [N, 3, H, W] by ``sigma`` pixels (a float, or one per image).

    The kernel spans ±4 px (2.7 σ at the largest σ used, 1.5), reflecting at
    the borders; σ = 0 leaves an image unchanged.
    """
    n = len(images)
    sigma = torch.as_tensor(sigma, dtype=torch.float32).expand(n).clamp(min=1e-6)
    offsets = torch.arange(-4, 5, dtype=torch.float32)                      # [9]
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)     # [N, 9]
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(3, 0)  # [3N, 9]
    x = F.pad(images.reshape(1, 3 * n, *images.shape[-2:]), (4, 4, 4, 4), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=3 * n)  # separable: along x ...
    x = F.conv2d(x, kernel[:, None, :, None], groups=3 * n)  # ... then along y
    return x.reshape(images.shape)


def colour_shift(images: Tensor, log_gain: Tensor, brightness: Tensor) -> Tensor:
    """``clamp(image · exp(log_gain) + brightness, 0, 1)``: log_gain [N, 3], brightness [N]."""
    return (images * log_gain.exp()[:, :, None, None]
            + brightness[:, None, None, None]).clamp(0, 1)


def augment(images: Tensor, generator: torch.Generator,
            p_blur: float = 0.6, p_colour: float = 0.5, p_noise: float = 0.3,
            ) -> tuple[Tensor, Tensor]:
    """Randomly flipped, tinted, blurred and noised copies of ``images``, and what was done.

    Each of colour, blur and noise is applied to an image with its probability,
    with amounts drawn uniformly (σ in [0, 1.5] px, log gains in ±0.2, brightness
    in ±0.15, noise SD in [0, 0.06]); an operation not applied has target 0.

    Returns:
        images [N, 3, H, W] in [0, 1], and targets [N, 6] in the order of
        ``TARGETS``, divided by their scales (see ``scaled_targets``).
    """
    n = len(images)

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=generator)

    def applied(p: float) -> Tensor:
        return (torch.rand(n, generator=generator) < p).float()

    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    shifted = applied(p_colour)
    log_gain = uniform(-MAX_LOG_GAIN, MAX_LOG_GAIN, 3) * shifted[:, None]   # [N, 3]
    brightness = uniform(-MAX_BRIGHTNESS, MAX_BRIGHTNESS) * shifted          # [N]
    sigma = uniform(0.0, MAX_BLUR_SIGMA) * applied(p_blur)                   # [N]
    noise_sd = uniform(0.0, MAX_NOISE_SD) * applied(p_noise)                 # [N]
    images = blur(colour_shift(images, log_gain, brightness), sigma)
    noise = torch.randn(images.shape, generator=generator) * noise_sd[:, None, None, None]
    images = (images + noise).clamp(0, 1)
    targets = torch.cat([sigma[:, None], log_gain, brightness[:, None], noise_sd[:, None]], 1)
    return images, scaled_targets(targets)


def scaled_targets(targets: Tensor) -> Tensor:
    """Augmentation targets [N, 6] in natural units (px, log gain, …) → the head's units."""
    return targets / torch.tensor(_SCALES)


def natural_targets(scaled: Tensor) -> Tensor:
    """The augmentation head's output [N, 6] → natural units (σ in px, log gains, …)."""
    return scaled * torch.tensor(_SCALES)


def save_encoder(encoder: LandscapeEncoder, path: str | Path, meta: dict) -> None:
    """Write the encoder's weights and config (plain tensors and numbers: weights_only loads)."""
    torch.save({"format": FORMAT, "config": encoder.config, "targets": list(TARGETS),
                "meta": meta, "state_dict": encoder.state_dict()}, path)


def load_encoder(path: str | Path = SHIPPED) -> LandscapeEncoder:
    """The landscape encoder saved at ``path`` (the shipped one by default), in eval mode.

    Raises:
        UsageError: the file is missing or is not a landscape encoder.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"landscape encoder {path} does not exist; train one with "
                         "`python scripts/train_encoder.py` or give the path of one")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise UsageError(f"cannot read landscape encoder {path} ({err})") from err
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise UsageError(f"{path} is not a landscape encoder (format {FORMAT}); give the .pt "
                         "that scripts/train_encoder.py writes")
    # Its initial weights are overwritten at once: drawing them must not move the
    # caller's random state (a training run that measures quality as it goes).
    with torch.random.fork_rng(devices=[]):
        encoder = LandscapeEncoder(**saved["config"])
    encoder.load_state_dict(saved["state_dict"])
    return encoder.eval().requires_grad_(False)
