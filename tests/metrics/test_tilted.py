"""The tilted-real yardstick against independent numpy/scipy computations."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.linalg
import torch

from pirtune.errors import UsageError
from pirtune.metrics import TiltError, precision_recall, resample, tilt, tilted_quality


@pytest.fixture(scope="module")
def pir() -> np.ndarray:
    """A pool of 2000 true PIRs, skewed low like a colour objective's on real scenes."""
    return np.random.default_rng(0).beta(2, 5, 2000)


def _numpy_weights(pir: np.ndarray, beta: float) -> np.ndarray:
    w = np.exp(beta * pir - np.max(beta * pir))
    return w / w.sum()


def _numpy_beta(pir: np.ndarray, target: float, bound: float = 200.0) -> float:
    """β of the weighted mean ``target`` by plain bisection on [-bound, bound]."""
    low, high = -bound, bound
    for _ in range(200):
        middle = (low + high) / 2
        if _numpy_weights(pir, middle) @ pir < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@pytest.mark.parametrize("gain", [0.1, -0.08, 0.02])
def test_beta_solves_the_mean_equation(pir, gain):
    target = pir.mean() + gain
    result = tilt(pir, target)
    beta = _numpy_beta(pir, target)
    assert result.beta == pytest.approx(beta, abs=1e-9)
    assert (result.beta > 0) == (gain > 0)
    weights = _numpy_weights(pir, beta)
    torch.testing.assert_close(result.weights, torch.from_numpy(weights), rtol=1e-8, atol=1e-12)
    assert float(result.weights.sum()) == pytest.approx(1)
    assert result.achieved == pytest.approx(target, abs=1e-12)
    assert result.target == target
    ess = weights.sum() ** 2 / (weights**2).sum()
    assert result.ess == pytest.approx(ess, rel=1e-8)
    assert result.ess_share == pytest.approx(ess / len(pir), rel=1e-8)


def test_the_pool_mean_needs_no_tilt(pir):
    result = tilt(torch.from_numpy(pir), float(pir.mean()))
    assert result.beta == pytest.approx(0, abs=1e-9)
    assert result.ess == pytest.approx(len(pir))
    torch.testing.assert_close(result.weights, torch.full((len(pir),), 1 / len(pir),
                                                          dtype=torch.float64))


def test_a_large_beta_stays_finite():
    # exp(β·PIR) alone overflows float64 past β ≈ 710; the tilt subtracts the largest.
    pir = np.linspace(0, 1, 5000)
    result = tilt(pir, 0.999, ess_floor=1)
    assert result.beta > 710
    assert torch.isfinite(result.weights).all()
    assert result.achieved == pytest.approx(0.999, abs=1e-12)
    assert result.beta == pytest.approx(_numpy_beta(pir, 0.999, bound=1e4), rel=1e-9)


@pytest.mark.parametrize("target", [1.0, 0.0])
def test_a_target_beyond_the_pool_is_refused(pir, target):
    edge = pir.max() if target > pir.mean() else pir.min()
    with pytest.raises(TiltError, match=re.escape(
            f"the generated mean PIR {target:.4f} is beyond what the real data hold: no tilt of "
            f"the 2000 real images reaches it (their PIRs are "
            f"{'at most' if target else 'at least'} {edge:.4f}, where the ESS falls to 1, "
            "against a floor of 100 images)")):
        tilt(pir, target)
    with pytest.raises(TiltError, match="beyond what the real data hold"):
        tilt(pir, float(pir.max()))  # reached only by β = ∞


def test_a_tilt_below_the_ess_floor_is_refused(pir):
    target = pir.mean() + 0.4
    weights = _numpy_weights(pir, _numpy_beta(pir, target))
    ess = weights.sum() ** 2 / (weights**2).sum()
    assert 50 < ess < 100  # the case: reachable, but by too few images
    with pytest.raises(TiltError, match=(
            rf"^the generated mean PIR {target:.4f} is beyond what the real data hold: tilting "
            rf"the 2000 real images to it \(β = [0-9.]+\) leaves an ESS of {ess:.1f} images, "
            r"below the floor of 100 \(a larger real pool or a lower floor admits it\)$")):
        tilt(pir, target)
    assert tilt(pir, target, ess_floor=50).ess == pytest.approx(ess, rel=1e-8)


def test_bad_input_is_refused(pir):
    with pytest.raises(UsageError, match=r"must lie in \[0, 1\], not 1.5"):
        tilt(np.array([0.2, 1.5, 0.3]), 0.3)
    with pytest.raises(UsageError, match="1-D array"):
        tilt(np.zeros((3, 2)), 0.3)
    with pytest.raises(UsageError, match="ess_floor=0"):
        tilt(pir, 0.3, ess_floor=0)


def test_resample_follows_the_weights(pir):
    weights = tilt(pir[:50], pir[:50].mean() + 0.1, ess_floor=1)
    count = 200_000
    picked = resample(weights, count, seed=3)
    assert picked.shape == (count,)
    torch.testing.assert_close(picked, resample(weights, count, seed=3))  # seeded
    frequencies = np.bincount(picked.numpy(), minlength=50) / count
    expected = weights.weights.numpy()
    # Each frequency is Binomial(count, w)/count: 5 SD bounds all 50 at once.
    margin = 5 * np.sqrt(expected * (1 - expected) / count)
    assert np.all(np.abs(frequencies - expected) <= margin), np.abs(frequencies - expected).max()


def _numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def _numpy_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """The unique-radius rule by brute force: radii of the distinct real points among
    themselves; recall over the real multiset, repeats counted."""
    distinct = np.unique(real, axis=0)

    def radius(point, points):
        return np.sort(np.linalg.norm(points - point, axis=1))[k]  # [0] is the point itself

    real_radii = [radius(p, distinct) for p in distinct]
    fake_radii = [radius(p, fake) for p in fake]
    precision = np.mean([any(np.linalg.norm(f - r) <= rr for r, rr in zip(distinct, real_radii,
                                                                          strict=True))
                         for f in fake])
    recall = np.mean([any(np.linalg.norm(r - f) <= fr for f, fr in zip(fake, fake_radii,
                                                                       strict=True))
                      for r in real])
    return float(precision), float(recall)


def test_the_tilted_figures_match_an_independent_computation():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(60, 4))
    pir = 1 / (1 + np.exp(-real[:, 0]))                  # PIR grows with the first feature
    fake = rng.normal(size=(60, 4)) + [0.6, 0, 0, 0]
    target = float(np.mean(1 / (1 + np.exp(-fake[:, 0]))))
    result = tilted_quality(torch.from_numpy(real), pir, torch.from_numpy(fake), target, k=3,
                            seed=5, ess_floor=10)
    weights = tilt(pir, target, ess_floor=10)
    picked = resample(weights, 60, seed=5).numpy()
    resampled = real[picked]
    assert len(np.unique(picked)) < 60  # repeats: the rule matters
    assert result.fid == pytest.approx(_numpy_fid(resampled, fake), rel=1e-6)
    assert (result.precision, result.recall) == pytest.approx(
        _numpy_precision_recall(resampled, fake, 3))
    assert result.beta == pytest.approx(_numpy_beta(pir, target), abs=1e-9)
    assert result.ess == pytest.approx(weights.ess)
    assert result.tilted_pir == pytest.approx(target)
    assert result.real_pir == pytest.approx(pir.mean())
    assert (result.pool, result.resampled, result.distinct, result.generated) == (
        60, 60, len(np.unique(picked)), 60)


def test_repeats_keep_their_balls_and_count_in_recall():
    # Three distinct real points, drawn 5, 3 and 2 times; the fakes sit on two of them.
    real = np.array([[0.0, 0], [1, 0], [0, 1]])
    counts = torch.tensor([5, 3, 2])
    multiset = np.repeat(real, counts.numpy(), axis=0)
    fake = np.array([[0.0, 0], [0.1, 0], [0.0, 0.1], [1, 0], [1.1, 0], [1, 0.1]])
    precision, recall = _numpy_precision_recall(multiset, fake, 1)
    # With the repeats as points, every real radius would be 0 and precision fall to 1/3.
    assert precision == 1.0
    assert recall == pytest.approx(8 / 10)  # the 2 copies of (0, 1) lie in no fake ball
    assert precision_recall(torch.from_numpy(real), torch.from_numpy(fake), 1,
                            counts) == pytest.approx((precision, recall))


def test_too_few_distinct_images_are_refused():
    real = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    pir = np.linspace(0, 1, 20)
    with pytest.raises(TiltError, match=r"distinct ones, too few for k=5 nearest neighbours"):
        tilted_quality(real, pir, torch.randn(30, 3), 0.97, ess_floor=1)
