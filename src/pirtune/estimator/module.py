"""Training the PIR estimator, freezing it for use, and scoring it (2.3, C.3).

``PIREstimatorModule`` trains the bin classifier with cross-entropy on the
observed PIR's bin (softmax temperature 1, Adam lr 5·10⁻⁴). For use (scoring
images, steering the generator) ``frozen()`` returns a ``FrozenPIREstimator``:
a copy with no trainable weights, always in eval mode, whose output is the
expected PIR at temperature 0.01, "behaving almost like a max" (C.3), and
differentiable with respect to its input images.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from scipy import stats
from torch import nn
from torchmetrics import MeanAbsoluteError, SpearmanCorrCoef

from pirtune.data.pir_dataset import PIRRecords
from pirtune.errors import UsageError
from pirtune.estimator.network import expected_pir, pir_to_bin
from pirtune.files import atomic_write

OptimizerFactory = Callable[..., torch.optim.Optimizer]
PAPER_LR = 5e-4                # C.3
TRAIN_TEMPERATURE = 1.0
USE_TEMPERATURE = 0.01         # C.3: when evaluating and when steering the GAN
ZERO_SHARE_WARNING = 0.5       # C.4.2: many near-zero PIRs went with failure


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] → float in [0, 1]; float images pass through."""
    return images.float().div(255.0) if images.dtype == torch.uint8 else images


def _spearman_metric() -> SpearmanCorrCoef:
    # It warns that it buffers every prediction; a validation split is a few
    # hundred floats.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all targets and predictions.*")
        return SpearmanCorrCoef()


class PIREstimatorModule(L.LightningModule):
    """Trains a PIR estimator on (images, observed PIR, true PIR or NaN) batches.

    Logs ``estimate/train/loss`` (cross-entropy on the observed PIR's bin) and,
    per validation epoch, ``estimate/val/loss``, ``estimate/val/mae`` and
    ``estimate/val/spearman_observed`` of the expected PIR at temperature 1
    against the observed PIR, plus ``estimate/val/spearman_true`` when the
    batch has true PIRs (simulated data).

    Args:
        network: maps images [B, 3, H, W] in [0, 1] to logits [B, bins]; must
            have a ``bins`` attribute (``PIREstimator`` has).
        optimizer: partial optimizer factory; default Adam with lr 5e-4 (C.3).
        targets: ``onehot`` (C.3: the observed PIR's bin) or ``hl_gauss`` (a
            Gaussian over the bins as wide as the PIR's binomial standard error,
            ``pirtune.estimator.ensemble``; batches then carry the impressions).
    """

    def __init__(self, network: nn.Module, optimizer: OptimizerFactory | None = None,
                 targets: str = "onehot") -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network", "optimizer"])
        if not isinstance(getattr(network, "bins", None), int):
            raise UsageError(
                f"{type(network).__name__} has no integer `bins`; use "
                "pirtune.estimator.PIREstimator or give the network a bins attribute"
            )
        self.network = network
        self.optimizer = optimizer or partial(torch.optim.Adam, lr=PAPER_LR)
        self.bins: int = network.bins
        if targets not in ("onehot", "hl_gauss"):
            raise UsageError(f"estimator.targets={targets!r} is unknown; choose onehot or "
                             "hl_gauss")
        self.targets = targets
        self.val_mae = MeanAbsoluteError()
        self.val_spearman_observed = _spearman_metric()
        self.val_spearman_true = _spearman_metric()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (uint8, or float in [0, 1]) [B, 3, H, W] → logits [B, bins]."""
        return self.network(to_unit_float(images))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.network.parameters())

    def _loss(self, logits: torch.Tensor, observed: torch.Tensor,
              impressions: torch.Tensor | None = None) -> torch.Tensor:
        if self.targets == "onehot":
            return F.cross_entropy(logits, pir_to_bin(observed, self.bins))
        if impressions is None:
            raise UsageError("estimator.targets=hl_gauss needs each image's impressions; "
                             "serve the data with PIRDataModule(impressions=True)")
        from pirtune.estimator.ensemble import hl_gauss_targets  # it imports this module

        return F.cross_entropy(logits, hl_gauss_targets(observed, impressions, self.bins))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, observed, _, *impressions = batch
        loss = self._loss(self(images), observed, *impressions)
        self.log("estimate/train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, observed, true, *impressions = batch
        logits = self(images)  # [B, bins]
        estimate = expected_pir(logits, TRAIN_TEMPERATURE)  # [B]
        self.log("estimate/val/loss", self._loss(logits, observed, *impressions), on_epoch=True)
        # Metric objects: Lightning computes them over the whole epoch and resets them.
        self.val_mae.update(estimate, observed)
        self.val_spearman_observed.update(estimate, observed)
        self.log("estimate/val/mae", self.val_mae, on_epoch=True)
        self.log("estimate/val/spearman_observed", self.val_spearman_observed, on_epoch=True)
        known = ~torch.isnan(true)
        if bool(known.any()):
            self.val_spearman_true.update(estimate[known], true[known])
            self.log("estimate/val/spearman_true", self.val_spearman_true, on_epoch=True)

    def frozen(self, temperature: float = USE_TEMPERATURE) -> FrozenPIREstimator:
        """A frozen copy for use: expected PIR at ``temperature`` (paper: 0.01)."""
        return FrozenPIREstimator(self.network, temperature)


class FrozenPIREstimator(nn.Module):
    """The estimator as used to score and steer: no trainable weights, always eval.

    Holds a deep copy of ``network``, so training the original further leaves it
    unchanged. Gradients flow to the input images, not to the weights.

    Args:
        network: the trained network (images in [0, 1] → logits [B, bins]).
        temperature: softmax temperature of the estimate (paper: 0.01).
        config: the config that built ``network``, when it was loaded from a file.
    """

    def __init__(self, network: nn.Module, temperature: float = USE_TEMPERATURE,
                 config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        if not temperature > 0:
            raise UsageError(f"temperature={temperature} must be positive (the paper uses 0.01)")
        self.network = copy.deepcopy(network).eval().requires_grad_(False)
        self.temperature = temperature
        self.bins: int = network.bins

    def train(self, mode: bool = True) -> FrozenPIREstimator:
        # A parent module's .train() (the tuning module's, every epoch) must not
        # switch BatchNorm back to batch statistics or turn dropout on here.
        super().train(mode)
        self.network.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (float in [0, 1], or uint8) [B, 3, H, W] → expected PIR [B]."""
        return expected_pir(self.network(to_unit_float(images)), self.temperature)


@dataclass(frozen=True)
class EstimatorReport:
    """How well a frozen estimator ranks and matches a PIR dataset.

    Attributes:
        n: images scored.
        temperature: softmax temperature of the estimates.
        mae: mean |estimate - observed PIR|.
        spearman_observed: rank correlation of estimates with observed PIRs.
        spearman_true: the same with true PIRs, or ``None`` without them.
        zero_share: share of observed PIRs in the first bin (C.4.2).
        mean_estimate: mean estimated PIR.
        mean_observed: mean observed PIR.
        warnings: plain-language problems worth a look.
    """

    n: int
    temperature: float
    mae: float
    spearman_observed: float
    spearman_true: float | None
    zero_share: float
    mean_estimate: float
    mean_observed: float
    warnings: tuple[str, ...] = ()


def _spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    if len(x) < 2:
        return math.nan
    with warnings.catch_warnings():
        # A constant input gives NaN, reported as a warning in the report instead.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x.numpy(), y.numpy()).statistic)


@torch.no_grad()
def estimate_pir(
    estimator: FrozenPIREstimator, images: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Estimated PIR [N] (on the CPU) of images [N, 3, H, W], scored in batches."""
    device = next(estimator.network.parameters()).device
    chunks = [estimator(images[i:i + batch_size].to(device)).cpu()
              for i in range(0, len(images), batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0)


def evaluate_estimator(
    estimator: PIREstimatorModule | FrozenPIREstimator,
    records: PIRRecords,
    temperature: float = USE_TEMPERATURE,
    batch_size: int = 256,
) -> EstimatorReport:
    """Scores ``records`` with a frozen estimator and compares with their PIRs.

    Args:
        estimator: a frozen estimator (its own temperature is used), or a training
            module, frozen here at ``temperature``.
        records: the images and PIRs to score, e.g. a held-out split.
        temperature: for a training module only (paper: 0.01 when evaluating).
        batch_size: images per forward pass.
    """
    if isinstance(estimator, PIREstimatorModule):
        estimator = estimator.frozen(temperature)
    elif not isinstance(estimator, FrozenPIREstimator):
        raise UsageError(
            f"cannot evaluate a {type(estimator).__name__}; pass a PIREstimatorModule or "
            "a FrozenPIREstimator"
        )
    if len(records) == 0:
        raise UsageError("records are empty; evaluate on at least one image")
    estimate = estimate_pir(estimator, records.images, batch_size)
    observed = records.observed_pir
    zero_share = records.zero_share(estimator.bins)
    spearman_true = (None if records.true_pir is None
                     else _spearman(estimate, records.true_pir))
    found: list[str] = []
    if zero_share > ZERO_SHARE_WARNING:
        found.append(
            f"{zero_share:.0%} of observed PIRs are zero to within the bin width "
            f"(1/{estimator.bins}); with so many, the paper's system failed to improve PIR "
            "(C.4.2): choose a denser objective or show more impressions"
        )
    if len(estimate) > 1 and bool((estimate == estimate[0]).all()):
        found.append(
            f"the estimator gives every image the same PIR ({float(estimate[0]):.3f}); "
            "it has not learned to rank them (train longer or check the data)"
        )
    return EstimatorReport(
        n=len(records),
        temperature=estimator.temperature,
        mae=float((estimate - observed).abs().mean()),
        spearman_observed=_spearman(estimate, observed),
        spearman_true=spearman_true,
        zero_share=zero_share,
        mean_estimate=float(estimate.mean()),
        mean_observed=float(observed.mean()),
        warnings=tuple(found),
    )


ESTIMATOR_FORMAT = "pirtune-estimator/1"


def save_estimator(module: PIREstimatorModule | list[PIREstimatorModule],
                   network_cfg: dict[str, Any], temperature: float, path: Path,
                   **extra: Any) -> Path:
    """Write the trained network(s), the config that builds them and their use temperature.

    A list of several modules is an ensemble: every member's weights go under
    ``members`` (``load_estimator`` then returns a ``FrozenPIREnsemble``).
    Written atomically (``pirtune.files``): a crash never leaves half a file.
    """
    modules = module if isinstance(module, list) else [module]
    weights = ({"state_dict": modules[0].network.state_dict()} if len(modules) == 1 else
               {"members": [m.network.state_dict() for m in modules]})
    with atomic_write(path) as f:
        torch.save({"format": ESTIMATOR_FORMAT, **weights, "network": network_cfg,
                    "temperature": temperature, **extra}, f)
    return path


def read_estimator_file(path: str | Path) -> dict[str, Any]:
    """The dict ``save_estimator`` (or ``save_choice_model``) wrote to ``path``, checked."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"estimator {path} does not exist; run stage=estimate first")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != ESTIMATOR_FORMAT:
        raise UsageError(f"{path} is not a pirtune estimator; give the estimator.pt that "
                         "stage=estimate writes")
    return saved


def load_estimator(path: str | Path) -> FrozenPIREstimator:
    """The frozen estimator saved by ``save_estimator``, at its saved temperature
    (a ``FrozenPIREnsemble`` when it holds several members), or the choice model
    ``save_choice_model`` saved (a ``FrozenChoiceModel``)."""
    return estimator_from_saved(read_estimator_file(path))


def estimator_from_saved(saved: dict[str, Any]) -> FrozenPIREstimator:
    """The frozen estimator of a saved dict (``read_estimator_file``; a bundle's selector
    keeps one whole)."""
    if saved.get("loss") == "choice":
        from pirtune.estimator.choice import load_choice_model  # it imports this module

        return load_choice_model(saved)
    if "members" in saved:
        from pirtune.estimator.ensemble import FrozenPIREnsemble  # it imports this module

        networks = []
        for state in saved["members"]:
            networks.append(instantiate(saved["network"]))
            networks[-1].load_state_dict(state)
        return FrozenPIREnsemble(networks, saved["temperature"], config=saved["network"])
    network = instantiate(saved["network"])
    network.load_state_dict(saved["state_dict"])
    return FrozenPIREstimator(network, saved["temperature"], config=saved["network"])
