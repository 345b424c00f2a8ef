"""The collect and estimate stages on a tiny generator: files, numbers, resuming."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from pirtune import train
from pirtune.data.pir_dataset import read_pir_dataset
from pirtune.errors import UsageError
from pirtune.estimator.module import load_estimator
from pirtune.estimator.network import expected_pir
from pirtune.objectives import ColourObjective


@pytest.fixture
def tiny_generator(make_cfg, tmp_path_factory) -> Path:
    cfg = make_cfg("pretrain.iterations=2", f"run_dir={tmp_path_factory.mktemp('gan')}")
    return train.run(cfg, "pretrain")


def test_collect_scores_samples_and_simulates_clicks(make_cfg, tiny_generator):
    cfg = make_cfg("stage=collect", "objective=color_red", f"generator_ckpt={tiny_generator}",
                   "collect.num_images=40", "collect.impressions=200", "collect.batch_size=16")
    out = train.run(cfg, "collect")
    assert out == Path(cfg.pir_data) and out.parent.name == "run"
    with open(out / "pir.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40
    assert list(rows[0])[:5] == ["image_id", "class", "impressions", "positives", "true_pir"]
    records = read_pir_dataset(out)
    assert set(records.impressions.tolist()) == {200}
    assert set(records.classes.tolist()) == {0, 1}
    assert records.latents.shape == (40, 64)
    # The stored true PIR is the objective's, up to the PNG's 8-bit rounding.
    rescored = ColourObjective(["red"])(records.images.float() / 255)
    torch.testing.assert_close(rescored, records.true_pir, atol=5e-3, rtol=0)
    # Clicks are binomial around the true PIR: within 5 standard errors on average.
    se = (records.true_pir * (1 - records.true_pir) / 200).mean().sqrt() / 40 ** 0.5
    assert abs((records.observed_pir - records.true_pir).mean()) < 5 * se
    assert records.meta["objective"]["name"] == "color_red"
    stamp = (out / "pir.csv").stat().st_mtime_ns
    train.run(cfg, "collect")  # done: skipped, nothing rewritten
    assert (out / "pir.csv").stat().st_mtime_ns == stamp


def test_collect_with_a_vgg_user(make_cfg, tiny_generator):
    cfg = make_cfg("objective=vgg_pool1", "objective.weights=random", "objective.k=3",
                   f"generator_ckpt={tiny_generator}", "collect.num_images=6")
    records = read_pir_dataset(train.run(cfg, "collect"))
    assert records.meta["objective"]["name"] == "vgg_pool1_k3_s0"
    assert ((records.true_pir > 0) & (records.true_pir < 1)).all()


def test_estimate_writes_estimator_and_report(make_cfg, tiny_generator):
    cfg = make_cfg("stage=estimate", f"generator_ckpt={tiny_generator}",
                   "collect.num_images=40", "estimator.epochs=2", "estimator.batch_size=8")
    with pytest.raises(UsageError, match="run stage=collect first"):
        train.run(cfg, "estimate")
    train.run(cfg, "collect")
    out = train.run(cfg, "estimate")
    saved = torch.load(out, weights_only=False)
    assert saved["temperature"] == 0.01 and saved["network"]["backbone"] == "small_cnn"
    report = json.loads((out.parent / "estimator_report.json").read_text())
    assert report["n"] == 8  # the held-out fifth of 40
    assert 0 <= report["mae"] <= 1 and report["spearman_true"] is not None
    assert (out.parent / "estimator_ckpt" / "last.ckpt").is_file()
    # The saved estimator comes back frozen, at its temperature, scoring as the
    # trained network does: rebuilt independently from the Lightning checkpoint.
    frozen = load_estimator(out)
    assert frozen.temperature == 0.01
    assert not any(p.requires_grad for p in frozen.parameters())
    records = read_pir_dataset(cfg.pir_data)
    images = records.images[:8].float() / 255
    estimates = frozen(images)
    assert estimates.shape == (8,) and ((estimates >= 0) & (estimates <= 1)).all()
    trained = instantiate(cfg.estimator.network)
    last = torch.load(out.parent / "estimator_ckpt" / "last.ckpt", weights_only=False)
    trained.load_state_dict({k.removeprefix("network."): v for k, v in last["state_dict"].items()
                             if k.startswith("network.")})
    trained.eval()
    with torch.no_grad():
        expected = expected_pir(trained(images), temperature=0.01)
    torch.testing.assert_close(estimates, expected)
    with pytest.raises(UsageError, match="not a pirtune estimator"):
        load_estimator(cfg.pir_data + "/latents.pt")


def test_loop_stages_share_a_run_named_after_the_objective(make_cfg):
    from hydra import compose, initialize_config_dir

    from pirtune.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        names = {
            args: compose(config_name="train", overrides=list(args)).name
            for args in [("stage=collect",), ("stage=estimate",), ("stage=pretrain",),
                         ("stage=collect", "objective=vgg_fc7", "objective.k=20"),
                         ("stage=estimate", "objective=vgg_pool2", "objective.filter=17"),
                         ("stage=collect", "objective=color_red_blue", "experiment=paper")]
        }
    # <label>-<hash of the results' settings>: collect and estimate share one run.
    labels = [name.rsplit("-", 1)[0] for name in names.values()]
    assert labels == ["cpu-color_blue", "cpu-color_blue", "cpu-pretrain", "cpu-vgg_fc7_k20_s0",
                      "cpu-vgg_pool2_f17", "paper-color_red_blue"]
    assert names[("stage=collect",)] == names[("stage=estimate",)]
    assert all(re.fullmatch(r"[0-9a-f]{8}", name.rsplit("-", 1)[1]) for name in names.values())
