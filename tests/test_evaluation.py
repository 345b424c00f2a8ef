"""The evaluation's samples and the training-set figures, against independent computations."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from pirtune.data.pir_dataset import PIRRecords
from pirtune.estimator.frozen import FrozenPIREstimator
from pirtune.evaluation import SCORES_NAME, TrainingSet, evaluate_generators


class _Readable(nn.Module):
    """A generator whose flat image spells out its latent's first entry and its class.

    Red is sigmoid(z₀), green is class / (C − 1): what was drawn can be read back
    from the scores, through the objective (red) and the estimator (green).
    """

    latent_dim, num_classes, resolution = 8, 3, 4

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # render() asks for a device

    def images(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        red = torch.sigmoid(z[:, 0])
        green = labels.float() / (self.num_classes - 1)
        flat = torch.stack([red, green, torch.zeros_like(red)], 1)  # [B, 3]
        return flat[:, :, None, None].expand(-1, -1, self.resolution, self.resolution)


class _GreenBins(nn.Module):
    """An estimator whose logits put all mass on the bin of the image's green."""

    bins = 100

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        centres = (torch.arange(self.bins) + 0.5) / self.bins
        return -1e4 * (images[:, 1].mean((1, 2))[:, None] - centres).abs()


def test_before_and_after_use_independent_latents_and_balanced_classes(tmp_path):
    n = 300
    generator = _Readable()
    record = {"objective": {}, "round": 1, "scale": "cpu", "estimator_backbone": "stub",
              "generator_before": "g", "generator_after": "g", "tuning": {}}
    # The same generator on both sides: any difference comes from the latents drawn.
    evaluation = evaluate_generators(
        generator, generator, lambda images: images[:, 0].mean((1, 2)),
        FrozenPIREstimator(_GreenBins()), TrainingSet(1, 0.0, 0.0, 0.0), tmp_path, record,
        num_samples=n, seed=5, batch_size=64)
    with open(tmp_path / SCORES_NAME) as f:
        rows = list(csv.DictReader(f))
    sets = {name: [r for r in rows if r["set"] == name] for name in ("before", "after")}
    assert {r["seed"] for r in sets["before"]} == {"5"}
    assert {r["seed"] for r in sets["after"]} == {"6"}
    z0 = {}
    for name, found in sets.items():
        assert len(found) == n
        classes = np.array([int(r["class"]) for r in found])
        assert np.bincount(classes).tolist() == [100, 100, 100]
        # Each row's class is the one its image was drawn for (read back through green).
        drawn = np.round(np.array([float(r["estimated_pir"]) for r in found]) * 2).astype(int)
        np.testing.assert_array_equal(drawn, classes)
        red = np.array([float(r["true_pir"]) for r in found])
        z0[name] = np.log(red / (1 - red))  # the latents' first entry, back from sigmoid
        # Fresh standard-normal latents: mean 0 and SD 1 within 5 standard errors.
        assert z0[name].mean() == pytest.approx(0, abs=5 / math.sqrt(n))
        assert z0[name].std() == pytest.approx(1, abs=5 / math.sqrt(2 * n))
    # Independent draws: no pairing between the sets, nor a shared order of classes.
    assert abs(stats.pearsonr(z0["before"], z0["after"]).statistic) < 4 / math.sqrt(n)
    classes = {name: [int(r["class"]) for r in found] for name, found in sets.items()}
    assert classes["before"] != classes["after"]
    assert evaluation.change.n_before == evaluation.change.n_after == n
    assert evaluation.change.mean_before == pytest.approx(
        np.mean([float(r["true_pir"]) for r in sets["before"]]), rel=1e-6)


def test_training_set_figures_match_numpy():
    positives = [0, 0, 1, 4, 5, 30, 99, 100, 250, 7]
    impressions = [100, 100, 100, 100, 200, 100, 100, 100, 1000, 1000]
    n = len(positives)
    records = PIRRecords(
        image_ids=[f"i{k}" for k in range(n)],
        images=torch.zeros(n, 3, 2, 2, dtype=torch.uint8),
        classes=torch.zeros(n, dtype=torch.int64),
        impressions=torch.tensor(impressions),
        positives=torch.tensor(positives),
    )
    observed = np.array(positives) / np.array(impressions)
    figures = TrainingSet.of(records, bins=100)
    assert figures.n == n
    assert figures.mean == pytest.approx(observed.mean(), rel=1e-6)
    assert figures.sd == pytest.approx(observed.std(ddof=1), rel=1e-6)
    # Zero to within a bin: below 1/100 (0, 0, 0.007); 1/100 itself is in the second bin.
    assert figures.zero_share == pytest.approx(3 / n)
    assert TrainingSet.of(records, bins=10).zero_share == pytest.approx(
        np.mean(observed < 0.1))


def test_each_colour_share_is_scored_and_read_back(tmp_path):
    """A generator that only grows redder: red's share rises and blue's (the third) falls,
    matching numpy on the same flat images; files without ``channels`` still load."""
    from pirtune.evaluation import Evaluation

    class _Tint(_Readable):
        def __init__(self, red: float) -> None:
            super().__init__()
            self.red = red

        def images(self, z, labels):
            flat = torch.tensor([self.red, 0.3, 0.5]).expand(len(z), 3).clone()
            flat += 0.01 * torch.tanh(z[:, :3])  # some spread, so Welch's t is finite
            return flat[:, :, None, None].expand(-1, -1, self.resolution, self.resolution)

    record = {"objective": {}, "round": 1, "scale": "cpu", "estimator_backbone": "stub",
              "generator_before": "g", "generator_after": "g", "tuning": {}}
    evaluation = evaluate_generators(
        _Tint(0.2), _Tint(0.8), lambda images: images[:, 0].mean((1, 2)),
        FrozenPIREstimator(_GreenBins()), TrainingSet(1, 0.0, 0.0, 0.0), tmp_path, record,
        num_samples=60, seed=0, batch_size=32)
    assert set(evaluation.channels) == {"red", "green", "blue"}
    for red in (0.2, 0.8):
        pixel = np.array([red, 0.3, 0.5])
        share = np.sqrt(pixel ** 2 / (pixel ** 2).sum())
        side = "mean_before" if red == 0.2 else "mean_after"
        for i, colour in enumerate(("red", "green", "blue")):
            assert getattr(evaluation.channels[colour], side) == pytest.approx(share[i], abs=2e-3)
    assert evaluation.channels["red"].delta > 0 > evaluation.channels["blue"].delta
    again = Evaluation.from_dict(json.loads(json.dumps(evaluation.to_dict())))
    assert again.channels == evaluation.channels
    old = {k: v for k, v in evaluation.to_dict().items() if k != "channels"}
    assert Evaluation.from_dict(old).channels is None
