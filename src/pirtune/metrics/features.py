"""The feature networks the metrics can be computed in, by name.

* ``landscape`` (default): the encoder trained here on the procedural scenes
  (``pirtune.metrics.encoder``), 128 features; it sees blur, colour and layout.
* ``inception``: torchvision's Inception v3 with its ImageNet weights, the
  2048 pool features (images resized to 299 px). These are torchvision's
  weights, not the TensorFlow FID Inception, so figures are close to but not
  the same as published FIDs. They are read from the torch hub cache only;
  nothing is downloaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models

from pirtune.errors import UsageError
from pirtune.metrics.encoder import load_encoder
from pirtune.pretrained import IMAGENET_MEAN, IMAGENET_STD, hub_cache_path

FEATURES = ("landscape", "inception")
INCEPTION_SIZE = 299
_INCEPTION = models.Inception_V3_Weights.IMAGENET1K_V1
_FETCH_COMMAND = (
    "python -c \"import torchvision; torchvision.models.inception_v3(weights='IMAGENET1K_V1')\""
)


class InceptionFeatures(nn.Module):
    """Images [N, 3, H, W] in [0, 1] → Inception v3's 2048 average-pool features [N, 2048]."""

    def __init__(self, state_dict: dict[str, Tensor]) -> None:
        super().__init__()
        # transform_input: the ported Google weights expect inputs in [-1, 1]; torchvision
        # maps ImageNet-normalised inputs there when this is on, as its own builder does.
        with torch.device("meta"):
            net = models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                      transform_input=True)
        net.load_state_dict({k: v for k, v in state_dict.items()
                             if not k.startswith("AuxLogits.")}, assign=True)
        net.fc = nn.Identity()  # [N, 2048] pool features instead of the 1000 logits
        self.net = net.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        x = F.interpolate(images.float(), size=(INCEPTION_SIZE, INCEPTION_SIZE),
                          mode="bilinear", align_corners=False)  # -> [N, 3, 299, 299]
        return self.net((x - self.mean) / self.std)                # -> [N, 2048]


def inception_cache_path():
    """Where torchvision caches the ImageNet Inception v3 weights (follows ``TORCH_HOME``)."""
    return hub_cache_path(_INCEPTION.url)


def feature_network(name: str = "landscape") -> nn.Module:
    """The feature network called ``name`` (one of ``FEATURES``), in eval mode, frozen.

    Raises:
        UsageError: the name is unknown, or ``inception`` is asked for and its
            weights are not in the torch hub cache.
    """
    if name == "landscape":
        return load_encoder()
    if name != "inception":
        raise UsageError(f"metrics.features={name!r} is unknown; choose one of: "
                         f"{', '.join(FEATURES)}")
    path = inception_cache_path()
    if not path.is_file():
        raise UsageError(
            f"Inception v3 ImageNet weights are missing: put the file at {path} (fetch "
            f"{_INCEPTION.url} on a networked machine, e.g. run `{_FETCH_COMMAND}` there and "
            "copy the file from its torch hub checkpoints folder), or set "
            "metrics.features=landscape to use the shipped landscape encoder"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise UsageError(f"cannot read the Inception v3 weights at {path} ({err}); fetch "
                         f"{_INCEPTION.url} again") from err
    return InceptionFeatures(state).requires_grad_(False)
