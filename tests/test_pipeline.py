"""The collect and estimate stages on a tiny generator: files, numbers, resuming."""

from __future__ import annotations

import csv
import importlib
import json
import logging
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from scipy import stats

from pirtune import train
from pirtune.data.datamodules import PIRDataModule
from pirtune.data.pir_dataset import read_pir_dataset
from pirtune.errors import UsageError
from pirtune.estimator.files import load_estimator
from pirtune.estimator.network import expected_pir
from pirtune.models.bundle import load_bundle, render
from pirtune.objectives import ColourObjective, sample_filters
from pirtune.objectives import vgg as vgg_module

# The module, not the function `pirtune.stages.estimate` that shadows it.
estimate_stage = importlib.import_module("pirtune.stages.estimate")


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


def test_collect_with_a_vgg_user(make_cfg, tiny_generator, monkeypatch):
    banks = []  # the stage's VGG16, kept: tests/objectives checks it against torchvision's
    real_bank = vgg_module.VGGFeatureBank
    monkeypatch.setattr(vgg_module, "VGGFeatureBank",
                        lambda **kwargs: banks.append(real_bank(**kwargs)) or banks[-1])
    cfg = make_cfg("objective=vgg_pool1", "objective.weights=random", "objective.k=3",
                   f"generator_ckpt={tiny_generator}", "collect.num_images=6")
    records = read_pir_dataset(train.run(cfg, "collect"))
    assert records.meta["objective"]["name"] == "vgg_pool1_k3_s0"
    assert records.meta["objective"]["filters"] == sample_filters(64, 3, seed=0)
    # Each row is the generator's image of its stored latent and class, scored by the
    # formula on the bank's squared filter norms: images, latents and scores belong together.
    generator, _, _ = load_bundle(tiny_generator)
    images = render(generator, records.latents, records.classes)
    torch.testing.assert_close(records.images.float() / 255, images, atol=0.5 / 255 + 1e-6,
                               rtol=0)
    [bank] = banks
    with torch.no_grad():
        squared = bank(images)["pool1"]  # [6, 64]
    filters = sample_filters(64, 3, seed=0)
    expected = (squared[:, filters].sum(1) / squared.sum(1)).sqrt()
    torch.testing.assert_close(records.true_pir, expected, rtol=1e-4, atol=1e-6)
    assert float(records.true_pir.std()) > 0  # six images, six different scores


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
    assert (out.parent / "estimator_ckpt" / "last.ckpt").is_file()
    # The saved estimator comes back frozen, at its temperature, scoring as the
    # trained network does: rebuilt independently from the Lightning checkpoint.
    frozen = load_estimator(out)
    assert frozen.temperature == 0.01
    assert not any(p.requires_grad for p in frozen.parameters())
    # The report's figures, recomputed on the held-out fifth of the 40 images (the
    # split the datamodule draws from the run's seed) with the saved estimator.
    split = PIRDataModule(cfg.pir_data, val_fraction=0.2, seed=cfg.seed)
    split.setup()
    held_out = split.val_records
    images = held_out.images.float() / 255
    with torch.no_grad():
        estimates = frozen(images)
    assert report["n"] == len(held_out) == 8
    assert report["mae"] == pytest.approx(
        float((estimates - held_out.observed_pir).abs().mean()), rel=1e-5)
    assert report["spearman_true"] == pytest.approx(
        stats.spearmanr(estimates, held_out.true_pir).statistic, abs=1e-6)
    assert report["zero_share"] == pytest.approx(float((held_out.positives * 100 <
                                                        held_out.impressions).double().mean()))
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


class _Crash(L.Callback):
    """Stops training at step ``at``, as a killed job would."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("killed")


def test_an_interrupted_estimate_resumes_from_its_last_checkpoint(make_cfg, tiny_generator,
                                                                  monkeypatch, caplog):
    cfg = make_cfg("stage=estimate", f"generator_ckpt={tiny_generator}", "collect.num_images=40",
                   "estimator.epochs=3", "estimator.batch_size=8")
    train.run(cfg, "collect")
    run = Path(cfg.run_dir)
    last = run / "estimator_ckpt" / "last.ckpt"
    real_trainer = estimate_stage.trainer
    monkeypatch.setattr(estimate_stage, "trainer", lambda run, callbacks, *args, **kwargs:
                        real_trainer(run, [*callbacks, _Crash(at=6)], *args, **kwargs))
    with pytest.raises(RuntimeError, match="killed"):
        train.run(cfg, "estimate")
    # 32 training images in batches of 8: the checkpoint after epoch 1, at step 4.
    assert torch.load(last, weights_only=False)["global_step"] == 4
    assert not (run / "estimator.pt").exists()

    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="pirtune.stages"):
        out = train.run(cfg, "estimate")
    assert f"estimate: resuming from {last}" in caplog.text
    assert out.is_file() and torch.load(last, weights_only=False)["global_step"] == 12
    # The resumed part trained steps 5–12 only, logged beside the first part's.
    with open(run / "logs" / "estimate" / "round1-part2" / "metrics.csv") as f:
        steps = {int(row["step"]) for row in csv.DictReader(f)
                 if row.get("estimate/train/loss_step")}
    assert min(steps) >= 4 and max(steps) >= 10, steps


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
