"""The human loop end to end: a simulated crowd through a real pirtune-serve, then the loop."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from pirtune import train
from pirtune.errors import UsageError
from pirtune.estimator.choice import FrozenChoiceModel
from pirtune.estimator.files import load_estimator, read_estimator_file
from pirtune.evaluation import INTERACTIONS_EVALUATION_NAME, load_evaluations
from pirtune.models.bundle import load_bundle
from pirtune.objectives import ColourObjective
from pirtune.webapp import InteractionLog
from pirtune.webapp.crowd import Noise, compose_objective, run_crowd
from pirtune.webapp.export import bundle_sha256

PEOPLE, ROUNDS = 3, 4


def interactions_loop(db: Path, generator: Path, *more: str) -> list[str]:
    """The loop on the web app's log with TINY-sized networks, data and stages."""
    return ["data=interactions", f"data.path={db}", f"generator_ckpt={generator}",
            "data.resolution=16", "data.real.num_images=32", "data.real.batch_size=8",
            "data.real.cache_dir=null", "model.generator.width=0.125",
            "model.discriminator.width=0.125", "logger=csv", "progress=false",
            "trainer.log_every_n_steps=1", "estimator.epochs=2", "estimator.batch_size=4",
            "estimator.val_fraction=0.34", "tune.steps=2", "tune.checkpoint_every=1",
            "evaluate.num_samples=16", "evaluate.batch_size=8", "evaluate.bootstrap=200",
            "quality.samples=16", "quality.kid_subsets=5", *more]


@pytest.fixture(scope="module")
def crowd_log(tmp_path_factory, tiny_generator) -> tuple[Path, list[str]]:
    """A crowd of three picking by color_blue through a real server: the log and sessions."""
    from pirtune.webapp.serve import launch

    db = tmp_path_factory.mktemp("crowd") / "interactions.db"
    server, base = launch(db, options=["--checkpoint", str(tiny_generator),
                                       "--sessions-per-client", "1000"])
    try:
        result = run_crowd(base, compose_objective("color_blue"), PEOPLE, ROUNDS,
                           Noise(temperature=0.05, random_share=0.1), undo_share=0.25, seed=3)
    finally:
        server.kill()
        server.wait()
    assert result.picks == PEOPLE * ROUNDS and len(result.sessions) == PEOPLE
    return db, result.sessions


def test_the_crowd_is_logged_with_its_generator(crowd_log, tiny_generator):
    db, sessions = crowd_log
    log = InteractionLog(db)
    # Every session records the checksum of the bundle that served it, kept its
    # picks (undone ones apart) and finished.
    assert log.generators() == {s: bundle_sha256(tiny_generator) for s in sessions}
    for session in sessions:
        assert len(log.choices(session)) == ROUNDS
        assert log.session(session)["finished"] is not None
    with sqlite3.connect(db) as raw:
        undone = raw.execute("SELECT COUNT(*) FROM undone_choices").fetchone()[0]
    assert undone == sum(len(log.undone(s)) for s in sessions) > 0


def test_the_loop_tunes_on_the_crowd_and_the_hidden_objective_judges(crowd_log, tiny_generator,
                                                                     make_cfg):
    db, _ = crowd_log
    cfg = make_cfg(*interactions_loop(db, tiny_generator, "objective=color_blue",
                                      "data.hidden_objective=true", "tune=pir_anchored",
                                      "tune.eval_every=1", "tune.eval_samples=8"), tiny=False)
    assert cfg.tune.anchor == 200 and cfg.tune.anchor_space == "features"
    report = train.run(cfg)
    run = Path(cfg.run_dir)
    # The tuning watch scores the crowd's hidden objective as its gold, at every check.
    with (run / "tune_watch.csv").open() as f:
        watch = list(csv.DictReader(f))
    assert [float(row["iteration"]) for row in watch] == [0, 1, 2]
    assert all(0 < float(row["gold_pir"]) < 1 for row in watch)
    assert float(watch[0]["distance"]) == 0 and float(watch[-1]["distance"]) > 0
    assert report == run / "report.md"
    estimator = load_estimator(run / "estimator.pt")
    assert isinstance(estimator, FrozenChoiceModel)
    # It names the generator whose images the crowd picked among (pirtune-serve --prior checks).
    assert read_estimator_file(run / "estimator.pt")["generators"] == [
        bundle_sha256(tiny_generator)]
    # The reward is on PIR's scale, and differentiable in the images.
    images = torch.rand(5, 3, 16, 16, requires_grad=True)
    reward = estimator(images)
    assert reward.shape == (5,) and bool(((reward > 0) & (reward < 1)).all())
    reward.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0

    result = json.loads((run / INTERACTIONS_EVALUATION_NAME).read_text())
    picks = result["estimator"]
    assert picks["held_out"] and picks["sessions"] == 1 and picks["rounds"] == ROUNDS
    assert picks["pick_accuracy"] in {k / (4 * ROUNDS) for k in range(4 * ROUNDS + 1)}
    view = result["model_view"]
    assert "own view" in view["label"]
    assert view["low"] <= view["delta"] <= view["high"]
    [(_, evaluation)] = load_evaluations(run)
    assert evaluation.objective["name"] == "color_blue"
    assert evaluation.predicted.delta == pytest.approx(view["delta"], abs=1e-6)
    # Early stopping watched a training person (never the held-out one) and kept an epoch.
    assert cfg.estimate.estimator.patience == 5
    stopped = picks["early_stopping"]
    assert stopped["rounds"] == ROUNDS and stopped["best_epoch"] in (0, 1)
    # The temperature fitted on the held-out person is the one the saved model uses.
    calibration = picks["calibration"]
    assert calibration["rounds"] == ROUNDS and calibration["scale"] > 0
    assert estimator.scale == pytest.approx(calibration["scale"])
    assert 0 <= calibration["ece"] <= 1 and sum(b["count"] for b in calibration["bins"]) == 16
    # Its prediction in the hidden objective's units, beside the measured change.
    units = result["hidden_objective"]["model_view_in_objective_units"]
    assert "own view" in units["label"] and units["fit"]["images"] > 0
    assert result["hidden_objective"]["true_delta"] == pytest.approx(evaluation.change.delta)
    assert units["ratio_to_true"] == pytest.approx(units["delta"] / evaluation.change.delta)
    assert units["low"] <= units["delta"] <= units["high"]
    # The hidden objective's verdict, again from the per-image scores.
    with open(run / "evaluation_scores.csv") as f:
        rows = list(csv.DictReader(f))
    sets = [np.array([float(r["true_pir"]) for r in rows if r["set"] == name])
            for name in ("before", "after")]
    pooled = np.sqrt((sets[0].var(ddof=1) + sets[1].var(ddof=1)) / 2)
    assert evaluation.change.cohens_d == pytest.approx(
        (sets[1].mean() - sets[0].mean()) / pooled, rel=1e-6)
    assert evaluation.change.welch.p == pytest.approx(
        stats.ttest_ind(sets[1], sets[0], equal_var=False).pvalue, rel=1e-6)
    _, _, meta = load_bundle(run / "tuned.pt")
    assert meta["iteration"] == 2 and meta["provenance"]["tuned_from"] == str(tiny_generator)
    text = report.read_text()
    assert "The estimator's own view" in text and "color_blue" in text
    assert "Expected calibration error" in text and "Predicted Δ" in text
    assert f"{evaluation.change.cohens_d:.3f}" in text
    assert (run / "quality.json").is_file() and (run / "quality_base.json").is_file()


def test_without_a_hidden_objective_only_the_model_speaks(crowd_log, tiny_generator, make_cfg):
    db, _ = crowd_log
    cfg = make_cfg(*interactions_loop(db, tiny_generator, "quality.in_loop=false"), tiny=False)
    report = train.run(cfg)
    run = Path(cfg.run_dir)
    assert not (run / "evaluation.json").exists()
    result = json.loads((run / INTERACTIONS_EVALUATION_NAME).read_text())
    assert result["hidden_objective"] is None
    assert "nobody knows" in report.read_text()


def test_the_tuned_generator_is_served_back_and_its_picks_join_the_next_round(
        crowd_log, tiny_generator, make_cfg, tmp_path):
    """The closed loop: picks → tuned generator → served by pirtune-serve → more picks,
    logged under the tuned generator's checksum → a second loop learns from both."""
    from pirtune.webapp.serve import launch

    db, sessions = crowd_log
    log_copy = tmp_path / "interactions.db"
    with sqlite3.connect(db) as source, sqlite3.connect(log_copy) as target:
        source.backup(target)
    first = make_cfg(*interactions_loop(log_copy, tiny_generator, "quality.in_loop=false",
                                        f"run_dir={tmp_path / 'first'}"), tiny=False)
    train.run(first)
    tuned = Path(first.run_dir) / "tuned.pt"
    assert bundle_sha256(tuned) != bundle_sha256(tiny_generator)
    server, base = launch(log_copy, options=["--checkpoint", str(tuned),
                                             "--sessions-per-client", "1000"])
    try:
        more = run_crowd(base, compose_objective("color_blue"), 1, ROUNDS,
                         Noise(temperature=0.05), undo_share=0.0, seed=4)
    finally:
        server.kill()
        server.wait()
    generators = InteractionLog(log_copy).generators()
    assert {generators[s] for s in more.sessions} == {bundle_sha256(tuned)}
    assert {generators[s] for s in sessions} == {bundle_sha256(tiny_generator)}
    second = make_cfg(*interactions_loop(log_copy, tiny_generator, "quality.in_loop=false",
                                         f"run_dir={tmp_path / 'second'}",
                                         f"data.generators=[{tuned}]"),
                      tiny=False)
    train.run(second)
    with open(Path(second.run_dir) / "pir_data" / "rounds.csv") as f:
        served = {row["generator"] for row in csv.DictReader(f)}
    assert served == {bundle_sha256(tiny_generator), bundle_sha256(tuned)}
    assert read_estimator_file(Path(second.run_dir) / "estimator.pt")["generators"] == sorted(
        served)
    report = json.loads((Path(second.run_dir) / "estimator_report.json").read_text())
    assert report["training_rounds"] + report["rounds"] == (PEOPLE + 1) * ROUNDS


def test_a_session_of_a_missing_generator_is_refused(crowd_log, tiny_generator, make_cfg,
                                                     tmp_path):
    db, sessions = crowd_log
    copy = tmp_path / "copy.db"
    with sqlite3.connect(db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with sqlite3.connect(copy) as raw:
        raw.execute("UPDATE sessions SET generator = ? WHERE id = ?", ("ab" * 32, sessions[0]))
    cfg = make_cfg(*interactions_loop(copy, tiny_generator, "stage=estimate"), tiny=False)
    with pytest.raises(UsageError, match=f"session {sessions[0]} was served by the generator "
                                         f"with sha256 {'ab' * 32}, which is none of"):
        train.run(cfg)


def test_bradley_terry_people_pick_as_often_as_luce_says():
    scores = np.array([0.2, 0.5, 0.3, 0.1])
    rng = np.random.default_rng(0)
    picks = np.bincount([Noise(temperature=0.1).pick(scores, rng) for _ in range(20_000)],
                        minlength=4) / 20_000
    expected = np.exp(scores / 0.1) / np.exp(scores / 0.1).sum()
    np.testing.assert_allclose(picks, expected, atol=0.01)
    assert Noise().pick(scores, rng) == 1
    uniform = np.bincount([Noise(random_share=1.0).pick(scores, rng) for _ in range(8000)],
                          minlength=4) / 8000
    np.testing.assert_allclose(uniform, 0.25, atol=0.02)


def test_the_crowd_composes_any_objective():
    objective = compose_objective("color_red_blue")
    assert isinstance(objective, ColourObjective) and objective.name == "color_red_blue"
    with pytest.raises(UsageError, match="objective 'color_purple' is unknown; choose one of"):
        compose_objective("color_purple")


@pytest.mark.parametrize(("args", "message"), [
    (["--temperature", "-1"], "--temperature -1.0 must be at least 0"),
    (["--set", "model.width=2"], "--set model.width=2: only objective.<key>=<value> overrides"),
    (["--objective", "color_purple"], "objective 'color_purple' is unknown; choose one of"),
])
def test_the_crowd_command_refuses_bad_input_in_one_line(args, message):
    result = subprocess.run([sys.executable, "-m", "pirtune.webapp.crowd", *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_the_crowd_says_when_no_server_answers():
    from pirtune.webapp.serve import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UsageError, match=f"no pirtune-serve answers at {url}"):
        run_crowd(url, ColourObjective(["blue"]), 1, 1)
