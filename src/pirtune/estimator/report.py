"""How well a frozen estimator ranks and matches a PIR dataset (C.3, C.4.2)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from scipy import stats

from pirtune.data.pir_dataset import PIRRecords
from pirtune.errors import UsageError
from pirtune.estimator.frozen import USE_TEMPERATURE, FrozenPIREstimator, estimate_pir
from pirtune.estimator.module import PIREstimatorModule

ZERO_SHARE_WARNING = 0.5       # C.4.2: many near-zero PIRs went with failure


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
