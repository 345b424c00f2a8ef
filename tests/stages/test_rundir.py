"""Run directories: rounds, stage records, refusing a different config, artifact names."""

from __future__ import annotations

import logging

import pytest

from pirtune import train
from pirtune.errors import UsageError
from pirtune.stages.config import CollectConfig
from pirtune.stages.rundir import Run, StageRecord, artifact_name, begin_stage, rounds

LOOP = ["collect.num_images=24", "collect.impressions=50", "collect.batch_size=12",
        "estimator.epochs=1", "estimator.batch_size=8", "tune.steps=2", "tune.checkpoint_every=1",
        "evaluate.num_samples=16", "evaluate.batch_size=8"]


def test_rounds_chain_generators_and_datasets(tmp_path):
    run = Run(tmp_path, "cpu-x", "cpu")
    first, second, third = rounds(run, 3, tmp_path / "g.pt", tmp_path / "pir_data")
    assert (first.dir, first.start, first.datasets) == (tmp_path, tmp_path / "g.pt",
                                                         (tmp_path / "pir_data",))
    assert second.start == tmp_path / "tuned.pt" and third.start == second.dir / "tuned.pt"
    assert third.baseline == tmp_path / "g.pt" and len(third.datasets) == 3
    with pytest.raises(UsageError, match="round=0 must be at least 1"):
        rounds(run, 0, "g.pt", "d")


def test_a_record_skips_the_same_config_and_refuses_another(tmp_path):
    section = CollectConfig(num_images=10, objective={"_target_": "x.Y", "colours": ["red"]})
    output = tmp_path / "out.csv"
    record = begin_stage("collect", tmp_path, section.fingerprint(), output)
    assert record is not None and not record.path.exists()  # written when the stage starts
    record.write()
    # Unfinished: the same config resumes under the same W&B id.
    assert begin_stage("collect", tmp_path, section.fingerprint(), output) == record
    output.write_text("done")
    assert begin_stage("collect", tmp_path, section.fingerprint(), output) is None
    # The batch size changes how it runs, not what it writes.
    faster = CollectConfig(num_images=10, batch_size=5, objective=section.objective)
    assert begin_stage("collect", tmp_path, faster.fingerprint(), output) is None
    other = CollectConfig(num_images=20, objective={"_target_": "x.Y", "colours": ["blue"]})
    with pytest.raises(UsageError) as refused:
        begin_stage("collect", tmp_path, other.fingerprint(), output)
    message = str(refused.value)
    assert "num_images: 10 -> 20" in message
    assert "objective.colours: ['red'] -> ['blue']" in message
    assert "another name=<name>" in message and f"delete {output}" in message
    assert StageRecord.read(record.path) == record


def test_a_finished_run_refuses_another_objective_under_its_name(make_cfg, tiny_generator,
                                                                 tmp_path, caplog):
    green_red = make_cfg("objective=color_green_red", f"generator_ckpt={tiny_generator}", *LOOP)
    report = train.run(green_red)
    text = report.read_text()
    with caplog.at_level(logging.INFO, logger="pirtune.stages"):
        train.run(green_red)  # the same command: every stage already done
    for stage in ("collect", "estimate", "tune", "evaluate"):
        assert f"{stage}: already done" in caplog.text
    blue = make_cfg("objective=color_blue", f"generator_ckpt={tiny_generator}", *LOOP)
    assert blue.run_dir == green_red.run_dir
    # The first stage the loop meets refuses: the quality of its start (it scores the
    # objective too), before collect.
    with pytest.raises(UsageError, match=r"quality_base in .* ran with a different config "
                                         r"\(objective.colours: \['green', 'red'\] -> "
                                         r"\['blue'\]\); give the run another name"):
        train.run(blue)
    assert report.read_text() == text and "color_green_red" in text


def test_artifact_names_follow_the_run_or_the_folder(tmp_path):
    run = Run(tmp_path / "cpu-color_red", "cpu-color_red", "cpu")
    assert artifact_name(run, run.dir / "round2" / "tuned.pt") == "cpu-color_red-round2-tuned"
    assert artifact_name(run, run.dir / "pir_data") == "cpu-color_red-pir_data"
    assert artifact_name(run, tmp_path / "cpu-pretrain" / "generator.pt") \
        == "cpu-pretrain-generator"
