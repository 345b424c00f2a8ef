"""Simulated users that like one or k filters of VGG16 (PIR paper, appendix C.4.1–C.4.2).

PIR for layer l and a set A of target filters is

    PIR(i) = sqrt( Σ_{f∈A} ‖VGG_{l,f}(i)‖² / Σ_{f∈l} ‖VGG_{l,f}(i)‖² ),

normalised by the whole layer so that raising contrast cannot raise PIR by
itself. A single filter (C.4.1) is the case |A| = 1; C.4.2 samples k filters
without replacement.

How images reach VGG16, and why:

1. Images come in as float [B, 3, H, W] in [0, 1], the generator's tanh output
   mapped by (x + 1) / 2.
2. They are resized bilinearly (antialiased when shrinking) to
   ``input_size``×``input_size``, 224 by default. VGG16's five max-pools halve
   the size five times; a 32 px image would be 1×1 after pool5, and the
   classifier (fc6–fc8) was trained on 7×7 pool5 maps, which only a 224 px
   input gives. Smaller sizes are allowed for the pool layers, where they only
   change the spatial resolution the filters see.
3. They are normalised by the ImageNet mean and standard deviation, the input
   statistics the ImageNet weights were trained with.

Layers, with F filters each: "pool1".."pool5" are the outputs of the five
max-pools of ``vgg16.features`` (F = 64, 128, 256, 512, 512; a filter's units
are its spatial positions); "fc6" and "fc7" are the first two fully connected
layers after their ReLU (F = 4096) and "fc8" the final logits (F = 1000); in
the fc layers each unit is a filter of size 1.

Choices the paper leaves open, stated here once:

* The paper does not say where in a conv block a "layer" is read; the pool
  outputs are used, one per block, giving eight layers as the paper's
  figures do (its sparse "layers 5, 6 and 7", then "fc8").
* fc6 and fc7 are read after their ReLU, where the paper's sparsity
  observation (C.4.2: many exact zeros) holds; fc8 has no ReLU, and its
  logits are squared as they are.
* The classifier stays in eval mode (no dropout), so a simulated user is
  deterministic; the binomial impression noise is added elsewhere.
* When the ImageNet weights cannot be had (offline machine), ``weights="random"``
  gives a VGG16 with torchvision's initialisation under a fixed seed. Its
  filters are arbitrary but fixed, so the experiments still run; results say
  which weights were used (``VGGFeatureBank.weights``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VGG16_Weights, vgg16

from pirtune.errors import UsageError
from pirtune.pretrained import IMAGENET_MEAN, IMAGENET_STD, hub_cache_path

log = logging.getLogger(__name__)

# Filters per layer, in network order.
LAYER_SIZES: dict[str, int] = {
    "pool1": 64,
    "pool2": 128,
    "pool3": 256,
    "pool4": 512,
    "pool5": 512,
    "fc6": 4096,
    "fc7": 4096,
    "fc8": 1000,
}
LAYERS: tuple[str, ...] = tuple(LAYER_SIZES)
WEIGHTS: tuple[str, ...] = ("imagenet", "random")

# torchvision's vgg16 classifier is Linear, ReLU, Dropout, Linear, ReLU, Dropout,
# Linear: fc6 and fc7 are read after their ReLU, fc8 is the last Linear.
_CLASSIFIER_TAPS = {1: "fc6", 4: "fc7", 6: "fc8"}

_IMAGENET = VGG16_Weights.IMAGENET1K_V1
_FETCH_COMMAND = (
    "python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\""
)


def imagenet_cache_path() -> Path:
    """Where torchvision caches the ImageNet VGG16 weights (follows ``TORCH_HOME``)."""
    return hub_cache_path(_IMAGENET.url)


def fetch_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """Download the ImageNet VGG16 weights into torchvision's cache and return them.

    A module-level function so that tests can replace it and never touch the
    network.
    """
    return _IMAGENET.get_state_dict(progress=False)


def load_vgg16(weights: str, seed: int = 0) -> nn.Module:
    """Build torchvision's VGG16 with ImageNet or seeded random weights.

    Args:
        weights: "imagenet" reads torchvision's cache file (see
            ``imagenet_cache_path``) without checking its hash, or downloads it
            there; "random" initialises VGG16 as torchvision does, under
            ``seed``, leaving the global RNG untouched.
        seed: Seed of the random initialisation; unused for "imagenet".

    Returns:
        The VGG16 model on the CPU, in whatever mode ``vgg16()`` returns.

    Raises:
        UsageError: ``weights`` is unknown, or the ImageNet file is missing and
            cannot be downloaded.
    """
    if weights == "random":
        # fork_rng restores the global CPU RNG afterwards, so building a
        # simulated user does not shift the seeded data or training streams.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = vgg16()
        log.warning(
            "PIRs come from a randomly initialised VGG16 (seed %d), not ImageNet weights; "
            "its filters are arbitrary but fixed",
            seed,
        )
        return model
    if weights != "imagenet":
        raise UsageError(
            f"objective.weights {weights!r} is unknown; choose one of: {', '.join(WEIGHTS)}"
        )
    path = imagenet_cache_path()
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        try:
            state = fetch_imagenet_state_dict()
        # Offline is a URLError, an OSError; a corrupt download a RuntimeError.
        except (OSError, RuntimeError) as err:
            raise UsageError(
                f"VGG16 ImageNet weights are missing: put the file at {path} (fetch "
                f"{_IMAGENET.url} on a networked machine, e.g. run `{_FETCH_COMMAND}` there "
                "and copy the file from its torch hub checkpoints folder), or set "
                "objective.weights=random to run with a seeded random VGG16 instead "
                f"({type(err).__name__}: {err})"
            ) from err
    # Built on the meta device: the random initialisation would be overwritten anyway.
    with torch.device("meta"):
        model = vgg16()
    model.load_state_dict(state, assign=True)
    return model


def _check_layers(layers: Sequence[str], valid: Sequence[str]) -> tuple[str, ...]:
    """Return ``layers`` as a tuple, or raise UsageError naming the first unknown one."""
    if isinstance(layers, str):
        layers = (layers,)
    for layer in layers:
        if layer not in valid:
            raise UsageError(f"VGG layer {layer!r} is unknown; choose one of: {', '.join(valid)}")
    if not layers:
        raise UsageError(f"no VGG layers requested; choose from: {', '.join(valid)}")
    return tuple(layers)


class VGGFeatureBank(nn.Module):
    """Per-filter squared ℓ2 norms of VGG16 activations, every layer in one forward pass.

    A sweep over hundreds of VGG objectives pays for VGG16 once: the bank maps
    images to all layers' norms, and each objective is a cheap function of one
    layer's row (``pir_from_bank``).

    Args:
        weights: "imagenet" or "random" (see ``load_vgg16``).
        seed: Seed of the random weights; unused for "imagenet".
        input_size: Side in pixels images are resized to before VGG16; keep the
            default 224 for fc layers (see the module docstring).
        layers: The layers this bank can compute; the network is cut after the
            deepest one, so pool-only banks skip the 120 M classifier weights.
    """

    def __init__(
        self,
        weights: str = "imagenet",
        seed: int = 0,
        input_size: int = 224,
        layers: Sequence[str] = LAYERS,
    ) -> None:
        super().__init__()
        if input_size < 32:
            raise UsageError(
                f"VGG input_size={input_size} is too small: five max-pools need at least 32 px; "
                "use 224 (or ≥ 32 for pool layers only)"
            )
        self.weights = weights
        self.seed = seed
        self.input_size = input_size
        self.layers = _check_layers(layers, LAYERS)
        vgg = load_vgg16(weights, seed)

        # One flat list of stages and the stage index at which each layer is read.
        stages: list[nn.Module] = []
        taps: dict[int, str] = {}
        pools = iter(name for name in LAYERS if name.startswith("pool"))
        for module in vgg.features:
            stages.append(module)
            if isinstance(module, nn.MaxPool2d):
                taps[len(stages) - 1] = next(pools)
        stages += [vgg.avgpool, nn.Flatten(1)]  # [B, 512, h, w] -> [B, 512·7·7]
        for index, module in enumerate(vgg.classifier):
            stages.append(module)
            if index in _CLASSIFIER_TAPS:
                taps[len(stages) - 1] = _CLASSIFIER_TAPS[index]
        last = max(index for index, name in taps.items() if name in self.layers)
        self.stages = nn.Sequential(*stages[: last + 1])
        self.taps = {index: name for index, name in taps.items() if index <= last}

        self.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGFeatureBank:
        """Stay in eval mode whatever the enclosing module asks: dropout would make PIR noisy."""
        return super().train(False)

    def forward(
        self, images: torch.Tensor, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Map images in [0, 1] to each layer's per-filter squared ℓ2 norms.

        Args:
            images: Float [B, 3, H, W] in [0, 1].
            layers: A subset of the bank's layers; the pass stops after the
                deepest one. Default: all the bank's layers.

        Returns:
            Layer name -> float [B, F] of squared norms ‖VGG_{l,f}(i)‖², F the
            layer's number of filters. Differentiable w.r.t. ``images``.
        """
        wanted = self.layers if layers is None else _check_layers(layers, self.layers)
        x = images
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(  # [B, 3, H, W] -> [B, 3, S, S]
                x, size=(self.input_size, self.input_size), mode="bilinear",
                align_corners=False, antialias=True,
            )
        x = (x - self.mean) / self.std
        norms: dict[str, torch.Tensor] = {}
        for index, stage in enumerate(self.stages):
            x = stage(x)
            name = self.taps.get(index)
            if name in wanted:
                # C.4.1: a filter's units are its spatial positions; fc units are single.
                sq = x.square()
                norms[name] = sq.flatten(2).sum(2) if sq.ndim == 4 else sq  # [B, F, h, w] -> [B, F]
                if len(norms) == len(wanted):
                    break
        return norms


@torch.no_grad()
def score_all(
    bank: VGGFeatureBank,
    images: torch.Tensor,
    batch_size: int = 50,
    layers: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Run the bank over many images in chunks, without gradients.

    Args:
        bank: The feature bank; chunks are moved to its device.
        images: Float [N, 3, H, W] in [0, 1], on any device.
        batch_size: Images per VGG16 pass; at 224 px the peak is two float maps of
            [batch_size, 64, 224, 224], 1.3 GB for 50.
        layers: As in ``VGGFeatureBank.forward``.

    Returns:
        Layer name -> float [N, F] squared norms, on the device of ``images``.
    """
    if batch_size < 1:
        raise UsageError(f"batch_size={batch_size} must be at least 1")
    device = bank.mean.device
    chunks = [
        {name: sq.to(images.device) for name, sq in bank(chunk.to(device), layers).items()}
        for chunk in images.split(batch_size)
    ]
    return {name: torch.cat([chunk[name] for chunk in chunks]) for name in chunks[0]}


def pir_from_bank(sq_norms: torch.Tensor, filters: Sequence[int]) -> torch.Tensor:
    """PIR from per-unit squared norms: sqrt(Σ_{f∈filters} sq_f / Σ_f sq_f) (C.4.1–C.4.2).

    Used by the colour objectives too, whose units are (channel, strip) blocks.

    Args:
        sq_norms: Float [N, F] of non-negative squared ℓ2 norms, one column per
            filter.
        filters: Column indices of the target filters.

    Returns:
        Float [N] in [0, 1]; 0 for rows with no activity at all. Differentiable,
        with finite gradients, also at PIR = 0.
    """
    selected = sq_norms[:, list(filters)].sum(1)  # [N, F] -> [N]
    total = sq_norms.sum(1)
    tiny = torch.finfo(sq_norms.dtype).tiny
    # Zero activity gives 0/0: read it as PIR 0. Rounding in the two sums can
    # push the ratio a hair above 1 when the other filters are ~0.
    ratio = (selected / total.clamp_min(tiny)).clamp(0.0, 1.0)
    # sqrt has an infinite slope at 0, so take it only where the ratio is positive;
    # the clamp keeps the unused branch's gradient finite (0 · finite, not 0 · inf).
    return torch.where(ratio > 0, ratio.clamp_min(tiny).sqrt(), torch.zeros_like(ratio))


def sample_filters(num_filters: int, k: int, seed: int) -> list[int]:
    """k distinct filter indices in [0, num_filters), drawn without replacement (C.4.2).

    Uses its own seeded generator, so the same seed gives the same filters on
    any machine without touching the global RNG. Returned in ascending order.
    """
    if not 1 <= k <= num_filters:
        raise UsageError(
            f"k={k} filters cannot be sampled from a layer of {num_filters}; "
            f"choose 1 ≤ k ≤ {num_filters}"
        )
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(num_filters, generator=generator)[:k].tolist())


def vgg_name(layer: str, filter: int | None, k: int, seed: int) -> str:
    """The objective's name (``vgg_pool2_f17``, ``vgg_fc7_k20_s0``); also names its run."""
    return f"vgg_{layer}_f{filter}" if filter is not None else f"vgg_{layer}_k{k}_s{seed}"


class VGGObjective(nn.Module):
    """A simulated user whose PIR is the share of VGG16 activity in one or k filters of a layer.

    Args:
        layer: One of ``LAYERS``.
        filter: The one target filter (C.4.1); needs k = 1. When None, k filters
            are sampled with ``seed`` (C.4.2).
        k: Number of target filters to sample.
        seed: Seed of the filter sampling (not of random VGG weights, which the
            bank's own seed fixes, so objectives with different seeds share one
            network).
        weights: "imagenet" or "random"; must match ``bank.weights`` when a bank
            is given.
        bank: A feature bank to share between objectives; by default one
            computing only ``layer`` is built.
        input_size: side VGG16 sees when the bank is built here (224, its
            training size; smaller is cheaper and valid for the pool layers).
    """

    def __init__(
        self,
        layer: str,
        filter: int | None = None,
        k: int = 1,
        seed: int = 0,
        weights: str = "imagenet",
        bank: VGGFeatureBank | None = None,
        input_size: int = 224,
    ) -> None:
        super().__init__()
        (self.layer,) = _check_layers((layer,), LAYERS)
        num_filters = LAYER_SIZES[layer]
        if filter is not None:
            if k != 1:
                raise UsageError(
                    f"objective filter={filter} names one filter but k={k}; "
                    "give either filter (with k=1) or k sampled filters"
                )
            if not 0 <= filter < num_filters:
                raise UsageError(
                    f"filter {filter} is outside layer {layer}'s filters 0..{num_filters - 1}"
                )
            self.filters = [int(filter)]
            self.seed = None
            self.name = vgg_name(layer, filter, k, seed)
        else:
            self.filters = sample_filters(num_filters, k, seed)
            self.seed = seed
            self.name = vgg_name(layer, filter, k, seed)
        self.k = k
        if bank is None:
            bank = VGGFeatureBank(weights=weights, layers=(layer,), input_size=input_size)
        elif bank.weights != weights:
            raise UsageError(
                f"objective.weights={weights} but the shared bank uses weights={bank.weights}; "
                "make them agree"
            )
        elif layer not in bank.layers:
            raise UsageError(
                f"the shared bank computes {', '.join(bank.layers)}, not {layer}; "
                f"build it with {layer} among its layers"
            )
        self.bank = bank

    @staticmethod
    def name_of(layer: str, filter: int | None = None, k: int = 1, seed: int = 0,
                **_: Any) -> str:
        """The name an objective built with these arguments has, without loading VGG16."""
        return vgg_name(layer, filter, k, seed)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map images float [B, 3, H, W] in [0, 1] to PIR float [B] in [0, 1]."""
        sq_norms = self.bank(images, layers=(self.layer,))[self.layer]  # [B, 3, H, W] -> [B, F]
        return pir_from_bank(sq_norms, self.filters)

    def describe(self) -> dict[str, Any]:
        """The objective's parameters, for reports."""
        return {
            "name": self.name,
            "kind": "vgg",
            "layer": self.layer,
            "filters": list(self.filters),
            "k": self.k,
            "seed": self.seed,
            "weights": self.bank.weights,
            "weights_seed": self.bank.seed if self.bank.weights == "random" else None,
            "input_size": self.bank.input_size,
        }
