"""The tilted-real yardstick: real images reweighted to a tuned generator's gain in PIR.

A tuned generator is meant to leave the real distribution, so its distance to
the real images mixes the gain it was asked for with any loss of quality. The
distribution that gains as much with the least change, the optimum of
KL-regularised reward maximisation (max over q of E_q[PIR] − KL(q‖p_real)/β),
is the real one exponentially tilted by the objective:
p_β(x) ∝ p_real(x)·exp(β·PIR(x)). On a pool of real images with true PIRs it
is a weighting: ``tilt`` solves β for a target mean PIR, ``resample`` draws
the tilted real set, and ``tilted_quality`` scores generated features against
it. Where the weights leave too few effective images (Kish's
ESS = (Σw)²/Σw²), the real data hold no such set, and ``TiltError`` says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq
from torch import Tensor

from pirtune.errors import UsageError
from pirtune.metrics.quality import fid_from_features, precision_recall

DEFAULT_ESS_FLOOR = 100  # effective real images a tilt must keep


class TiltError(UsageError):
    """A target mean PIR is beyond what the real pool holds: no tilt reaches it, or the one
    that does leaves too few effective images."""


@dataclass(frozen=True)
class Tilt:
    """Real images weighted ∝ exp(β·PIR) so that their weighted mean PIR is a target.

    Attributes:
        beta: β; positive when the target lies above the pool's mean, 0 at it.
        weights: each pool image's weight [N] (float64, summing to 1).
        ess: the effective sample size 1/Σw² (Kish), in images: N when β = 0.
        ess_share: ``ess`` / N.
        target: the mean PIR asked for.
        achieved: the weighted mean PIR Σ w·PIR at ``beta``.
    """

    beta: float
    weights: Tensor
    ess: float
    ess_share: float
    target: float
    achieved: float


def _pir(values: Tensor | np.ndarray) -> Tensor:
    """``values`` as float64 [N] PIRs in [0, 1], or a UsageError naming what is wrong."""
    pir = torch.as_tensor(values).double()
    if pir.ndim != 1 or len(pir) < 2:
        raise UsageError(f"the real PIRs must be a 1-D array of at least 2, not shape "
                         f"{tuple(pir.shape)}")
    if not bool(((pir >= 0) & (pir <= 1)).all()):  # NaN fails both comparisons
        bad = pir[~((pir >= 0) & (pir <= 1))][0].item()
        raise UsageError(f"the real PIRs must lie in [0, 1], not {bad}; score the images "
                         "with an objective (pirtune.objectives.score)")
    return pir


def _weights(pir: Tensor, beta: float) -> Tensor:
    """exp(β·PIR) normalised to sum 1 [N]."""
    logits = beta * pir
    weights = torch.exp(logits - logits.max())  # the largest is exp(0): no overflow
    return weights / weights.sum()


def _ess(weights: Tensor) -> float:
    """Kish's effective sample size (Σw)²/Σw² of weights [N]."""
    return float(weights.sum() ** 2 / weights.square().sum())


def _bracket(gap: Callable[[float], float], direction: float) -> float:
    """A β on ``direction``'s side of 0 where ``gap`` (increasing in β) has changed sign.

    The weighted mean tends to the pool's largest (smallest) PIR as β grows (falls), so a
    target strictly inside the pool's range is passed by a finite β: once exp(β·Δ)
    underflows for every gap Δ between PIRs, the mean is that extreme itself.
    """
    beta = direction
    for _ in range(1000):  # float64 PIRs differ by more than 1e-300: 2^1000 passes them
        if np.sign(gap(beta)) == np.sign(direction):
            return beta
        beta *= 2
    raise RuntimeError(f"no β up to {beta:g} passes the target; the PIRs are not finite")


def tilt(pir: Tensor | np.ndarray, target: float, *,
         ess_floor: float = DEFAULT_ESS_FLOOR) -> Tilt:
    """The exponential tilt of a real pool whose weighted mean PIR is ``target``.

    β solves Σ w_i·pir_i = target with w_i ∝ exp(β·pir_i) (``scipy.optimize.brentq``;
    the weighted mean rises with β, its derivative being the weighted variance).

    Args:
        pir: the true PIRs [N] of the pool's real images, in [0, 1].
        target: the mean PIR to reach (a tuned generator's mean true PIR).
        ess_floor: the fewest effective images (``Tilt.ess``) the tilt may keep.

    Raises:
        TiltError: ``target`` is at or beyond the pool's smallest or largest PIR, or the
            tilt to it leaves an ESS below ``ess_floor``.
        UsageError: ``pir``, ``target`` or ``ess_floor`` is no valid value.
    """
    pir = _pir(pir)
    if not np.isfinite(target):
        raise UsageError(f"the target mean PIR must be a number in [0, 1], not {target}")
    if not ess_floor > 0:
        raise UsageError(f"ess_floor={ess_floor} must be a positive number of images")
    target, n = float(target), len(pir)
    low, high = float(pir.min()), float(pir.max())
    if not low < target < high:
        edge, side = (high, "at most") if target >= high else (low, "at least")
        ties = int((pir == edge).sum())
        raise TiltError(f"the generated mean PIR {target:.4f} is beyond what the real data "
                        f"hold: no tilt of the {n} real images reaches it (their PIRs are "
                        f"{side} {edge:.4f}, where the ESS falls to {ties}, against a floor of "
                        f"{ess_floor:g} images)")

    def gap(beta: float) -> float:
        return float((_weights(pir, beta) * pir).sum()) - target

    at_zero = gap(0.0)
    if at_zero == 0:
        beta = 0.0
    else:
        end = _bracket(gap, 1.0 if at_zero < 0 else -1.0)
        beta = float(brentq(gap, *sorted((0.0, end)), xtol=1e-12, rtol=4 * np.finfo(float).eps))
    weights = _weights(pir, beta)
    ess = _ess(weights)
    if ess < ess_floor:
        raise TiltError(f"the generated mean PIR {target:.4f} is beyond what the real data "
                        f"hold: tilting the {n} real images to it (β = {beta:.3g}) leaves an "
                        f"ESS of {ess:.1f} images, below the floor of {ess_floor:g} (a larger "
                        "real pool or a lower floor admits it)")
    return Tilt(beta=beta, weights=weights, ess=ess, ess_share=ess / n, target=target,
                achieved=float((weights * pir).sum()))


def resample(tilt: Tilt, count: int, seed: int) -> Tensor:
    """The tilted real set: ``count`` pool indices [count] drawn with replacement ∝ the
    weights, from a torch generator seeded with ``seed``."""
    if count < 1:
        raise UsageError(f"count={count} must be at least 1 image")
    return torch.multinomial(tilt.weights, count, replacement=True,
                             generator=torch.Generator().manual_seed(seed))


@dataclass(frozen=True)
class TiltedQuality:
    """Generated features against the real pool tilted to their mean true PIR.

    Attributes:
        beta, ess, ess_share: the tilt's (``Tilt``).
        fid: the Fréchet distance to the resampled real set (its repeats included).
        precision: the share of generated samples inside a distinct resampled real
            image's k-NN ball.
        recall: the share of the resampled real set, counted with multiplicity, inside a
            generated sample's k-NN ball.
        generated_pir: the generated samples' mean true PIR (the tilt's target).
        tilted_pir: the pool's weighted mean true PIR under the tilt (what it reached).
        real_pir: the pool's plain mean true PIR.
        pool: real images weighted.
        resampled: images drawn from them with replacement (the tilted real set).
        distinct: distinct images among those.
        generated: generated samples.
    """

    beta: float
    ess: float
    ess_share: float
    fid: float
    precision: float
    recall: float
    generated_pir: float
    tilted_pir: float
    real_pir: float
    pool: int
    resampled: int
    distinct: int
    generated: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TiltedQuality:
        return cls(**data)

    def cells(self) -> dict[str, str]:
        """Its figures as table cells, labelled as ``Quality.cells`` labels the same ones."""
        return {"FID": f"{self.fid:.3f}", "precision": f"{self.precision:.3f}",
                "recall": f"{self.recall:.3f}",
                "mean true PIR": f"{self.tilted_pir:.3f} (untilted {self.real_pir:.3f})",
                "tilt β": f"{self.beta:.3f}",
                "ESS": f"{self.ess:.0f} of {self.pool} ({100 * self.ess_share:.1f} %)"}


def tilted_quality(real_features: Tensor, real_pir: Tensor | np.ndarray, fake_features: Tensor,
                   fake_mean_pir: float, *, k: int = 5, seed: int = 0,
                   ess_floor: float = DEFAULT_ESS_FLOOR,
                   count: int | None = None) -> TiltedQuality:
    """FID, precision and recall of generated features against the tilted real set.

    The real pool is tilted to the generated samples' mean true PIR (``tilt``) and
    ``count`` images are resampled from it with replacement (``resample``). FID takes
    the resampled set as it is, repeats included. Precision and recall are
    ``precision_recall``'s (Kynkäänniemi et al. 2019) with one change, since a
    repeated image would be its own nearest neighbours and shrink its k-NN radius to
    0: the real radii are those of the *distinct* resampled images among themselves,
    precision is the share of generated samples inside any distinct real image's
    ball, and recall the share of the resampled real multiset, each image counted as
    often as it was drawn, inside any generated sample's ball (the generated radii
    from the generated samples, as usual).

    Args:
        real_features: the pool's features [N, d].
        real_pir: the pool's true PIRs [N] in [0, 1].
        fake_features: the generated samples' features [M, d].
        fake_mean_pir: the generated samples' mean true PIR, the tilt's target.
        k: nearest neighbours of precision and recall.
        seed: the resampling's seed.
        ess_floor: the fewest effective real images the tilt may keep (``tilt``).
        count: real images resampled; by default M, so FID's small-sample bias is the
            untilted figure's at equal set sizes.

    Raises:
        TiltError: the tilt is refused (``tilt``), or its resampled set holds k or fewer
            distinct images.
    """
    pir = _pir(real_pir)
    if real_features.ndim != 2 or len(real_features) != len(pir):
        raise UsageError(f"real_features must be [N, d] with one row per real PIR ({len(pir)}),"
                         f" not {tuple(real_features.shape)}")
    weighted = tilt(pir, fake_mean_pir, ess_floor=ess_floor)
    count = len(fake_features) if count is None else count
    picked = resample(weighted, count, seed)                                  # [count]
    distinct, counts = picked.unique(return_counts=True)
    if len(distinct) <= k:
        raise TiltError(f"the generated mean PIR {weighted.target:.4f} is beyond what the real "
                        f"data hold: the {count} images resampled from its tilt are "
                        f"{len(distinct)} distinct ones, too few for k={k} nearest neighbours "
                        f"(ESS {weighted.ess:.1f}, floor {ess_floor:g})")
    precision, recall = precision_recall(real_features[distinct], fake_features, k, counts)
    return TiltedQuality(
        beta=weighted.beta, ess=weighted.ess, ess_share=weighted.ess_share,
        fid=fid_from_features(real_features[picked], fake_features), precision=precision,
        recall=recall, generated_pir=weighted.target, tilted_pir=weighted.achieved,
        real_pir=float(pir.mean()), pool=len(pir), resampled=count, distinct=len(distinct),
        generated=len(fake_features))
