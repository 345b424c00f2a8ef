"""Training the PIR estimator (2.3, C.3).

``PIREstimatorModule`` trains the bin classifier with cross-entropy on the
observed PIR's bin (softmax temperature 1, Adam lr 5·10⁻⁴). For use (scoring
images, steering the generator) ``frozen()`` returns a ``FrozenPIREstimator``
(``pirtune.estimator.frozen``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, SpearmanCorrCoef

from pirtune.errors import UsageError
from pirtune.estimator.frozen import USE_TEMPERATURE, FrozenPIREstimator, to_unit_float
from pirtune.estimator.network import expected_pir, pir_to_bin
from pirtune.estimator.targets import hl_gauss_targets

OptimizerFactory = Callable[..., torch.optim.Optimizer]
PAPER_LR = 5e-4                # C.3
TRAIN_TEMPERATURE = 1.0


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
            ``pirtune.estimator.targets``; batches then carry the impressions).
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
