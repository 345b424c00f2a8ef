"""Ensembles of estimators and their bootstrap data (issue 16)."""

from __future__ import annotations

import pytest
import torch

from pirtune import train
from pirtune.data.datamodules import PIRDataModule
from pirtune.errors import UsageError
from pirtune.estimator.ensemble import FrozenPIREnsemble, conservative_reward
from pirtune.estimator.files import load_estimator


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
