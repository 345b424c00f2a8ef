"""data=interactions: stage=estimate learns from the web app's log, or from its export
(the binned estimator here; the choice model and the whole loop: test_crowd_loop)."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from pirtune import train
from pirtune.errors import UsageError
from pirtune.paths import CONFIG_DIR
from pirtune.webapp import InteractionLog

# Not conftest's TINY: its data.num_images and data.cache_dir are landscapes' keys.
ESTIMATE = ["stage=estimate", "data=interactions", "data.resolution=16", "logger=csv",
            "progress=false", "trainer.log_every_n_steps=1", "estimator.epochs=1",
            "estimator.batch_size=4", "estimator.loss=bins"]


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> tuple[Path, dict[tuple, list[int]]]:
    """An interaction log of two sessions, and per (latent, class) [impressions, positives].

    Session A shows its round-1 pick again in round 2 and picks it again: one image,
    two impressions, two positives. Session B shows A's round-1 latents in class 1
    (other images) and leaves round 2 unanswered: never judged, so not counted.
    """
    latents = torch.randn(11, 64, generator=torch.Generator().manual_seed(0)).tolist()
    log = InteractionLog(tmp_path_factory.mktemp("webapp") / "interactions.db")
    a = log.create_session("preference", 0, {"seed": 0})
    log.record_shown(a, 1, latents[0:4], 0)
    log.record_choice(a, 1, 1)
    log.record_shown(a, 2, [latents[1], *latents[4:7]], 0)
    log.record_choice(a, 2, 0)
    b = log.create_session("preference", 1, {"seed": 1})
    log.record_shown(b, 1, latents[0:4], 1)
    log.record_choice(b, 1, 2)
    log.record_shown(b, 2, latents[7:11], 1)
    log.close()
    expected = {(tuple(latents[i]), 0): [1, 0] for i in range(7)}
    expected[tuple(latents[1]), 0] = [2, 2]
    expected |= {(tuple(latents[i]), 1): [1, 0] for i in [0, 1, 2, 3]}
    expected[tuple(latents[2]), 1] = [1, 1]
    return log.path, expected


def _table(pir_data: Path) -> dict[tuple, list[int]]:
    """pir.csv and latents.pt read directly: per (latent, class) [impressions, positives]."""
    latents = torch.load(pir_data / "latents.pt")
    with open(pir_data / "pir.csv") as f:
        return {(tuple(latents[row["image_id"]].tolist()), int(row["class"])):
                [int(row["impressions"]), int(row["positives"])] for row in csv.DictReader(f)}


def test_estimate_exports_the_log_into_its_own_run_and_learns_from_it(make_cfg, tiny_generator,
                                                                      logged, caplog):
    db, expected = logged
    cfg = make_cfg(*ESTIMATE, f"data.path={db}", f"generator_ckpt={tiny_generator}", tiny=False)
    out = train.run(cfg)
    assert out == Path(cfg.run_dir) / "estimator.pt" and out.is_file()
    pir_data = Path(cfg.pir_data)
    assert _table(pir_data) == expected  # one row per image shown in an answered round: 11
    # Resumable: a second run exports nothing again.
    stamp = (pir_data / "pir.csv").stat().st_mtime_ns
    out.unlink()
    with caplog.at_level("INFO", logger="pirtune.stages"):
        train.run(cfg)
    assert out.is_file() and (pir_data / "pir.csv").stat().st_mtime_ns == stamp
    assert f"{db} was exported to {pir_data} already" in caplog.text


def test_estimate_learns_from_an_exported_folder_as_is(make_cfg, tiny_generator, logged,
                                                       tmp_path):
    db, expected = logged
    first = make_cfg(*ESTIMATE, f"data.path={db}", f"generator_ckpt={tiny_generator}",
                     f"run_dir={tmp_path / 'first'}", tiny=False)
    train.run(first)
    cfg = make_cfg(*ESTIMATE, f"data.path={first.pir_data}", tiny=False)
    assert train.run(cfg).is_file()
    assert not Path(cfg.pir_data).exists()  # nothing exported: no generator needed
    assert _table(Path(first.pir_data)) == expected


def test_interactions_have_their_own_run():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        names = [compose(config_name="train", overrides=args).run_dir for args in [
            ["stage=estimate", "data=interactions"], ["stage=estimate", "data=imagefolder"]]]
    assert [Path(name).name.rsplit("-", 1)[0] for name in names] == ["cpu-interactions",
                                                                       "cpu-color_blue"]


def test_a_bad_path_names_itself_and_the_fix(make_cfg, tmp_path):
    missing = tmp_path / "nowhere.db"
    with pytest.raises(UsageError, match=re.escape(f"data.path={missing} is neither")):
        train.run(make_cfg(*ESTIMATE, f"data.path={missing}", tiny=False))
    (tmp_path / "notes.txt").write_text("not a database\n")
    with pytest.raises(UsageError, match="is not an interaction log .* give the .db"):
        train.run(make_cfg(*ESTIMATE, f"data.path={tmp_path / 'notes.txt'}", tiny=False))
    with pytest.raises(UsageError, match="data.path must be set"):
        train.run(make_cfg(*ESTIMATE, tiny=False))


@pytest.mark.parametrize("stage", ["pretrain", "collect", "sample", "quality"])
def test_other_stages_refuse_interactions(make_cfg, stage):
    cfg = make_cfg("data=interactions", f"stage={stage}", tiny=False)  # data.path unset, too
    with pytest.raises(UsageError, match=f"data=interactions feeds stage=loop, estimate, tune, "
                                         f"evaluate, report; run stage={stage} with "
                                         "data=landscapes or data=imagefolder"):
        train.run(cfg)


def test_the_choice_model_needs_the_picks(make_cfg):
    cfg = make_cfg("stage=estimate", "estimator.loss=choice", tiny=False)
    with pytest.raises(UsageError, match="estimator.loss=choice learns from the web app's picks; "
                                         "add data=interactions"):
        train.run(cfg)


def test_the_command_line_refuses_collect_on_interactions_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pirtune.train", f"run_dir={tmp_path / 'run'}", "logger=csv",
         "stage=collect", "data=interactions", "data.path=x"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "data=interactions feeds stage=loop" in lines[0], result.stderr
