"""Watching tuning (gold vs proxy, quality, D), the controlled variant, and the specific gain."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from scipy import stats

from pirtune import train
from pirtune.compose import settings
from pirtune.evaluation import load_evaluations
from pirtune.models.watch import WATCH_NAME, WATCH_SUMMARY, LowerBoundStop, rms_distance
from pirtune.report import HEADINGS


def loop_settings(generator: Path) -> list[str]:
    """A loop of seconds, its (the paper's) tuning checked at every iteration."""
    return [f"generator_ckpt={generator}", "tune=pir", "collect.num_images=24",
            "collect.impressions=50",
            "collect.batch_size=12", "estimator.epochs=1", "estimator.batch_size=8",
            "tune.steps=3", "tune.checkpoint_every=1", "tune.eval_every=1",
            "evaluate.num_samples=16", "evaluate.batch_size=8"]


def _logged(run: Path) -> dict[str, list[float]]:
    """Every metric the CSV loggers of the run wrote, by name."""
    found: dict[str, list[float]] = {}
    for path in run.rglob("metrics.csv"):
        with path.open() as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if value not in ("", None):
                        found.setdefault(key, []).append(float(value))
    return found


def test_the_watch_logs_gold_proxy_quality_and_d_and_the_control_gives_the_specific_gain(
        make_cfg, tiny_generator):
    cfg = make_cfg("objective=color_green_red", *loop_settings(tiny_generator))
    report = train.run(cfg)
    run = Path(cfg.run_dir)
    with (run / WATCH_NAME).open() as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    # The start, then every iteration: 0, 1, 2, 3.
    assert [row["iteration"] for row in rows] == [0, 1, 2, 3]
    for row in rows:
        for key in ("proxy_pir", "gold_pir", "precision", "recall", "density", "coverage",
                    "d_real_acc", "d_fake_acc", "class_accuracy_coast"):
            assert 0.0 <= row[key] <= (math.inf if key == "density" else 1.0), key
        assert row["gap"] == pytest.approx(row["proxy_pir"] - row["gold_pir"])
        assert row["fid"] > 0 and row["kid"] == row["kid"] and row["adv_to_pir"] > 0
    # The tilted yardstick beside them: the real images tilted by the gold to the samples'
    # mean gold PIR (the start's is close to the real mean, so the tilt is admitted).
    assert rows[0]["tilted_ess"] >= 16 / 4 and rows[0]["tilted_fid"] > 0
    assert 0 <= rows[0]["tilted_precision"] <= 1
    # At the start the samples are the untuned generator's: distance 0, then it grows.
    assert rows[0]["distance"] == 0.0 and rows[-1]["distance"] > 0
    assert "proxy_sd" not in rows[0]  # one estimator: no disagreement to show
    logged = _logged(run)
    for key in ("proxy_pir", "gold_pir", "gap", "fid", "recall", "distance", "d_real_acc",
                "d_fake_acc", "adv_to_pir"):
        assert len(logged[f"tune/eval/{key}"]) == 4, key
    assert "tune/train/adv_to_pir" in logged and "tune/train/d_real_acc" in logged
    summary = json.loads((run / WATCH_SUMMARY).read_text())
    assert summary["early_stop"] == "off" and summary["checks"] == 4
    assert summary["gold_best"] == max(rows, key=lambda r: r["gold_pir"])["iteration"]

    # The mirrored control, scored on the same images; specific gain = target Δ − control Δ.
    (_, evaluation), = load_evaluations(run)
    assert evaluation.control_objective["name"] == "color_red_green"
    with (run / evaluation.scores).open() as f:
        scores = list(csv.DictReader(f))
    mean = {(s, key): sum(float(r[key]) for r in scores if r["set"] == s) / 16
            for s in ("before", "after") for key in ("true_pir", "control_pir")}
    target = mean["after", "true_pir"] - mean["before", "true_pir"]
    control = mean["after", "control_pir"] - mean["before", "control_pir"]
    assert evaluation.control.delta == pytest.approx(control, abs=1e-9)
    assert evaluation.specific_gain == pytest.approx(target - control, abs=1e-9)
    welch = stats.ttest_ind([float(r["control_pir"]) for r in scores if r["set"] == "after"],
                            [float(r["control_pir"]) for r in scores if r["set"] == "before"],
                            equal_var=False)
    assert evaluation.control.welch.t == pytest.approx(welch.statistic, rel=1e-6)
    assert json.loads((run / "evaluation.json").read_text())["control"]["delta"] == \
        pytest.approx(control, abs=1e-9)

    markdown = report.read_text()
    specificity = markdown.split(HEADINGS["specificity"])[1].split("## ")[0]
    assert "color_red_green" in specificity and f"{target - control:.4f}" in specificity
    watch = markdown.split(HEADINGS["watch"])[1]
    assert "report/watch_" in watch
    assert len(list((run / "report").glob("watch_*.png"))) == 1


def test_the_controlled_variant_tunes_with_an_ensemble_and_records_its_stopping_rule(
        make_cfg, tiny_generator):
    cfg = make_cfg("objective=color_blue", *loop_settings(tiny_generator),
                   "tune=pir_conservative", "tune.early_stop_patience=1")
    assert cfg.estimate.estimator.members == 3 and cfg.tune.anchor_space == "features"
    train.run(cfg)
    run = Path(cfg.run_dir)
    with (run / WATCH_NAME).open() as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    for row in rows:
        assert row["proxy_sd"] >= 0
        assert row["proxy_lower"] == pytest.approx(row["proxy_pir"] - row["proxy_sd"], abs=1e-6)
    summary = json.loads((run / WATCH_SUMMARY).read_text())
    rule = LowerBoundStop(patience=1)
    fired = [row["iteration"] for row in rows if rule.update(int(row["iteration"]),
                                                             row["proxy_lower"])]
    assert summary["early_stop_at"] == (fired[0] if fired else None)
    assert summary["early_stop_best"] == (rule.stop_best if fired else rule.best)
    # color_blue is one colour: no mirrored split, so no control.
    (_, evaluation), = load_evaluations(run)
    assert evaluation.control is None and evaluation.specific_gain is None
    assert evaluation.tuning["reward"] == "conservative" and evaluation.tuning["anchor"] == 200


def test_the_lower_bound_rule_stops_after_patience_checks_without_a_better_bound():
    rule = LowerBoundStop(patience=2)
    fired = [step for step, value in ((0, 0.30), (50, 0.35), (100, 0.34), (150, 0.36),
                                      (200, 0.35), (250, 0.33), (300, 0.40))
             if rule.update(step, value)]
    assert fired == [250] and rule.fired_at == 250
    assert rule.stop_best == 150  # where tuning should have ended, as the rule fired
    assert rule.best == 300  # it keeps watching; the record keeps where it stopped


def test_rms_distance_is_per_image():
    import torch

    a = torch.zeros(2, 3, 4, 4)
    b = torch.stack([torch.full((3, 4, 4), 0.5), torch.zeros(3, 4, 4)])
    torch.testing.assert_close(rms_distance(b, a), torch.tensor([0.5, 0.0]))


@pytest.mark.parametrize(("override", "message"), [
    ("tune.reward=mode", "tune.reward='mode' is unknown; choose one of: mean, conservative"),
    ("tune.anchor_space=latent", "tune.anchor_space='latent' is unknown; choose one of: "
                                 "pixels, features"),
    ("tune.anchor=-1", "tune.anchor=-1.0 must be at least 0"),
    ("tune.eval_samples=4", "tune.eval_samples=4 must be more than 5"),
    ("tune.early_stop=stop tune.eval_every=0", "tune.early_stop=stop decides at the checks; "
                                               "set tune.eval_every"),
    ("estimator.targets=gauss", "estimator.targets='gauss' is unknown; choose one of: "
                                "onehot, hl_gauss"),
    ("estimator.members=0", "estimator.members=0 must be at least 1"),
])
def test_bad_options_are_refused_in_one_line_naming_the_value(make_cfg, override, message):
    from pirtune.errors import UsageError

    cfg = make_cfg(*override.split())
    with pytest.raises(UsageError, match=message.replace(".", r"\.").replace("(", r"\(")):
        settings(cfg)


def test_watching_leaves_the_papers_tuning_exactly_as_it_was(make_cfg, tiny_generator, tmp_path):
    import shutil

    import torch

    tuned = {}
    for every in (0, 1):
        cfg = make_cfg("objective=color_blue", *loop_settings(tiny_generator),
                       f"tune.eval_every={every}", f"run_dir={tmp_path / f'every{every}'}")
        if every == 0:
            train.run(cfg, "collect")
            train.run(cfg, "estimate")
            first = Path(cfg.run_dir)
        else:
            shutil.copytree(first / "pir_data", Path(cfg.run_dir) / "pir_data")
            shutil.copyfile(first / "estimator.pt", Path(cfg.run_dir) / "estimator.pt")
        tuned[every] = torch.load(train.run(cfg, "tune"), weights_only=True)
    assert (tmp_path / "every1" / WATCH_NAME).is_file()
    assert not (tmp_path / "every0" / WATCH_NAME).exists()
    for network in ("generator", "discriminator"):
        for key, value in tuned[0][network].items():
            assert torch.equal(value, tuned[1][network][key]), (network, key)
