"""The PIR estimator: a bin classifier from images to PIR (2.3, C.3)."""

from pirtune.estimator.frozen import FrozenPIREstimator
from pirtune.estimator.module import PIREstimatorModule
from pirtune.estimator.network import PIREstimator, bin_centres, expected_pir, pir_to_bin
from pirtune.estimator.report import EstimatorReport, evaluate_estimator

__all__ = [
    "EstimatorReport",
    "FrozenPIREstimator",
    "PIREstimator",
    "PIREstimatorModule",
    "bin_centres",
    "evaluate_estimator",
    "expected_pir",
    "pir_to_bin",
]
