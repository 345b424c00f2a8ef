"""Run names: every setting that changes results changes the name; nothing else does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pirtune import train
from pirtune.errors import UsageError
from pirtune.paths import CONFIG_DIR, SHIPPED_GENERATOR
from pirtune.stages.naming import results, results_hash

# Each changes what a loop writes, so each must give the loop another run directory.
RESULT_SETTINGS = ["seed=1", "objective.weights=random", "objective=vgg_pool2",
                   "objective=vgg_pool2 objective.input_size=64", "estimator=resnet18",
                   "estimator.epochs=3", "tune.lr=1e-4", "tune.steps=10", "tune.w_pir=5",
                   "data.num_images=100", "data.resolution=16", "data.batch_size=32",
                   "collect.impressions=10", "evaluate.num_samples=10", "quality.samples=100",
                   "quality.tilt_ess_floor=50",
                   "generator_ckpt=/x/g.pt", "pir_data=/x/pir_data"]
# How a run is carried out or shown, not what it writes.
SAME_RESULTS = ["logger=csv", "progress=false", "data.num_workers=3", "trainer=gpu",
                "trainer=ddp", "round=2", "iterations=2", "collect.batch_size=7",
                "evaluate.batch_size=7", "evaluate.device=cpu", "quality.batch_size=7",
                "data.cache_dir=/elsewhere", "hydra.job.chdir=true"]


def _names(*commands: str) -> list[str]:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return [compose(config_name="train", overrides=command.split()).name
                for command in commands]


def test_a_name_is_a_label_and_a_hash_of_the_results(monkeypatch, tmp_path):
    monkeypatch.setenv("PIRTUNE_HOME", str(tmp_path))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train")
    assert re.fullmatch(r"cpu-color_blue-[0-9a-f]{8}", cfg.name)
    assert cfg.run_dir == str(tmp_path / "runs" / cfg.name)
    assert cfg.name == f"cpu-color_blue-{results_hash(results(cfg))}"
    settings = results(cfg)
    assert settings["tune.lr"] == 5e-5 and settings["collect.seed"] == 0
    # The run's own folder is a placeholder (pir_data lives in it); the shipped
    # generator is named inside the package, so the hash is the same in any checkout.
    assert settings["pir_data"] == "<run>/pir_data"
    assert settings["generator_ckpt"] == "pirtune:checkpoints/acgan-cpu.pt"
    assert settings["tune.data.batch_size"] == 64  # the discriminator's batches during tuning
    assert not {"tune.data.num_workers", "tune.data.cache_dir", "collect.batch_size",
                "evaluate.batch_size", "evaluate.device", "quality.batch_size"} & set(settings)


def test_every_setting_that_changes_results_changes_the_name():
    default, *changed = _names("", *RESULT_SETTINGS)
    assert [s for s, name in zip(RESULT_SETTINGS, changed, strict=True) if name == default] == []
    assert len(set(changed)) == len(RESULT_SETTINGS)


def test_settings_that_do_not_change_results_keep_the_name():
    default, *others = _names("", *SAME_RESULTS)
    assert others == [default] * len(SAME_RESULTS)


def test_the_same_command_finds_its_run_again_from_any_home(monkeypatch, tmp_path):
    first = _names("seed=3 tune.lr=1e-4")
    monkeypatch.setenv("PIRTUNE_HOME", str(tmp_path))
    assert _names("tune.lr=1e-4 seed=3") == first


def test_each_stage_hashes_only_what_it_reads():
    loop, tuned, pretrain, pretrain_seeded, pretrain_tuned = _names(
        "stage=collect", "stage=collect tune.lr=1e-4", "stage=pretrain",
        "stage=pretrain seed=1", "stage=pretrain tune.lr=1e-4")
    # Loop stages share a run whose name covers every loop stage's settings.
    assert loop == _names("stage=estimate")[0] and tuned != loop
    assert pretrain.startswith("cpu-pretrain-") and pretrain_seeded != pretrain
    assert pretrain_tuned == pretrain  # pre-training reads no tuning setting
    # The quality stage reads the objective: it weights the tilted real set.
    quality, other_objective = _names("stage=quality", "stage=quality objective=vgg_pool2")
    assert quality.startswith("cpu-quality-") and other_objective != quality


def test_photos_pretrain_under_their_own_name_and_the_loop_starts_from_them(tmp_path):
    root = tmp_path / "my_photos"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        scenes = compose(config_name="train", overrides=["stage=pretrain"])
        photos, loop = (compose(config_name="train", overrides=[
            "data=imagefolder", f"data.root={root}", *stage]) for stage in (["stage=pretrain"],
                                                                            []))
    assert re.fullmatch(r"cpu-pretrain-my_photos-[0-9a-f]{8}", photos.name)
    assert photos.run_dir != scenes.run_dir
    assert scenes.generator_ckpt == str(SHIPPED_GENERATOR)
    assert loop.generator_ckpt == loop.sample.generator == str(Path(photos.run_dir) /
                                                               "generator.pt")
    assert re.fullmatch(r"cpu-color_blue-my_photos-[0-9a-f]{8}", loop.name)


def test_the_paper_loop_starts_from_the_paper_pretraining_of_the_same_settings():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        pretrain, loop, seeded = (compose(config_name="train", overrides=["experiment=paper",
                                                                          *more])
                                  for more in (["stage=pretrain"], [], ["seed=1"]))
    assert loop.generator_ckpt == str(Path(pretrain.run_dir) / "generator.pt")
    assert pretrain.name.startswith("paper-pretrain-")
    assert seeded.generator_ckpt != loop.generator_ckpt  # a seed sweep pre-trains per seed


def test_a_missing_generator_that_is_no_pretrain_output_names_the_command(make_cfg, tmp_path):
    missing = tmp_path / "nowhere.pt"
    cfg = make_cfg(f"generator_ckpt={missing}")
    with pytest.raises(UsageError, match=re.escape(
            f"generator_ckpt {missing} does not exist; pre-train it first with stage=pretrain "
            "with the same data and model, or give generator_ckpt=<a generator bundle>")):
        train.run(cfg)
    assert not Path(cfg.run_dir).exists()
