"""Ensembles of estimators, their bootstrap data, HL-Gauss targets (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from pirtune import train
from pirtune.data.datamodules import PIRDataModule, bootstrap_indices
from pirtune.errors import UsageError
from pirtune.estimator.ensemble import FrozenPIREnsemble, conservative_reward
from pirtune.estimator.files import load_estimator
from pirtune.estimator.targets import hl_gauss_targets


def _scipy_targets(p: float, n: int, bins: int) -> tuple[np.ndarray, float]:
    """Independently: N(p, σ²) with σ the binomial SE (≥ 0.75 bins) over [0, 1] in bins."""
    sigma = max(np.sqrt(p * (1 - p) / n), 0.75 / bins)
    cdf = stats.norm(loc=p, scale=sigma).cdf(np.linspace(0, 1, bins + 1))
    mass = np.diff(cdf)
    return mass / mass.sum(), sigma


@pytest.mark.parametrize(("p", "n"), [(0.5, 4), (0.3, 1000), (0.0, 1000), (0.97, 20),
                                      (0.42, 1)])
def test_hl_gauss_targets_are_the_binned_gaussian_of_the_binomial_se(p, n):
    targets = hl_gauss_targets(torch.tensor([p]), torch.tensor([n]), bins=100)[0].double()
    expected, sigma = _scipy_targets(p, n, 100)
    assert float(targets.sum()) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(targets.numpy(), expected, atol=1e-6)
    centres = (np.arange(100) + 0.5) / 100
    mean = float(targets.numpy() @ centres)
    sd = float(np.sqrt(targets.numpy() @ (centres - mean) ** 2))
    if 4 * sigma < min(p, 1 - p):  # far from the ends: no truncation to speak of
        assert mean == pytest.approx(p, abs=2e-3)
        # Binning a Gaussian adds a bin width²/12 to its variance (Sheppard).
        assert sd == pytest.approx(np.sqrt(sigma ** 2 + (1 / 100) ** 2 / 12), rel=0.03)


def test_few_impressions_give_softer_targets_than_many():
    targets = hl_gauss_targets(torch.tensor([0.5, 0.5]), torch.tensor([3, 1000]), bins=100)
    assert float(targets[0].max()) < 0.1 < float(targets[1].max())
    with pytest.raises(UsageError, match="impressions must be at least 1"):
        hl_gauss_targets(torch.tensor([0.5]), torch.tensor([0]), bins=100)


def test_bootstrap_resamples_are_seeded_with_replacement_and_differ():
    a, b = bootstrap_indices(200, 0), bootstrap_indices(200, 1)
    assert torch.equal(a, bootstrap_indices(200, 0))
    assert not torch.equal(a, b)
    assert int(a.min()) >= 0 and int(a.max()) < 200 and len(a.unique()) < 200
    with pytest.raises(UsageError, match="cannot resample 0 images"):
        bootstrap_indices(0, 0)


def test_conservative_reward_refuses_a_single_member():
    with pytest.raises(UsageError, match="needs estimates"):
        conservative_reward(torch.rand(1, 4), 1.0)


def test_an_ensemble_estimate_trains_distinct_members_on_distinct_resamples(
        make_cfg, tiny_generator):
    cfg = make_cfg("objective=color_blue", f"generator_ckpt={tiny_generator}",
                   "collect.num_images=24", "collect.impressions=50", "collect.batch_size=12",
                   "estimator.epochs=1", "estimator.batch_size=8", "estimator.members=2",
                   "estimator.targets=hl_gauss")
    train.run(cfg, "collect")
    path = train.run(cfg, "estimate")
    estimator = load_estimator(path)
    assert isinstance(estimator, FrozenPIREnsemble) and len(estimator.network) == 2
    first, second = (dict(m.named_parameters()) for m in estimator.network)
    assert any(not torch.equal(first[k], second[k]) for k in first)
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    members = estimator.members(images)
    assert members.shape == (2, 6)
    torch.testing.assert_close(estimator(images), members.mean(0))
    assert torch.load(path, weights_only=True)["targets"] == "hl_gauss"

    # The members' data: bootstrap resamples of one training split, different per seed.
    observed = []
    for seed in (0, 1):
        dm = PIRDataModule(cfg.pir_data, batch_size=64, bootstrap=seed, impressions=True)
        images, pir, _, impressions = next(iter(dm.train_dataloader()))
        assert torch.equal(impressions, torch.full_like(impressions, 50))
        observed.append(sorted(pir.tolist()))
    assert observed[0] != observed[1]
