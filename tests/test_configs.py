"""Every experiment composes and instantiates; bad group options get one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from pirtune.errors import UsageError
from pirtune.paths import CONFIG_DIR
from pirtune.train import check_group_overrides

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (CONFIG_DIR / "trainer").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", tiny=False)
    assert cfg.scale == experiment
    module = instantiate(cfg.model)
    datamodule = instantiate(cfg.data)
    assert module.generator.resolution == datamodule.resolution
    for spec in cfg.logger.values():
        assert spec._target_.startswith("lightning.pytorch.loggers.")
    trainer_cfg = dict(cfg.trainer)
    assert trainer_cfg.pop("_target_") == "lightning.pytorch.Trainer"


def test_paper_experiment_is_the_paper():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=paper"])
    m = cfg.model
    assert (m.generator.width, m.generator.norm, m.generator.latent_dim) == (1.0, "none", 64)
    assert (m.g_optimizer._target_, m.g_optimizer.lr, m.g_optimizer.betas[0]) == (
        "torch.optim.Adam", 1e-5, 0.5)
    assert (m.d_optimizer._target_, m.d_optimizer.lr) == ("torch.optim.RMSprop", 1e-5)
    assert (m.w_fake_class, m.w_real_class) == (1.5, 1.0)
    assert cfg.data.resolution == 64 and cfg.pretrain.iterations == 1_100_000
    # Section 2.4: w_PIR 1000, lr 1e-6, 50,000 steps; section 4: 1000 samples, α 0.001.
    assert (cfg.tune.w_pir, cfg.tune.lr, cfg.tune.steps) == (1000, 1e-6, 50_000)
    assert (cfg.evaluate.num_samples, cfg.evaluate.alpha) == (1000, 0.001)
    assert cfg.estimator.temperature == 0.01 and cfg.stage == "loop"


def test_a_sweep_config_composes_with_the_report_callback():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=local"],
                      return_hydra_config=True)
    assert cfg.hydra.callbacks.report._target_ == "pirtune.report.SweepReport"
    assert cfg.tune.steps == 400 and cfg.tune.lr == 5e-5  # the CPU-sized default


@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainer_options_compose(make_cfg, trainer):
    cfg = make_cfg(f"trainer={trainer}")
    assert cfg.trainer.accelerator in {"cpu", "gpu"}
    if trainer != "cpu":
        assert cfg.trainer.precision == "bf16-mixed"
    if trainer == "ddp":
        assert cfg.trainer.strategy.startswith("ddp")


def test_ddp_runs_on_two_cpu_processes(make_cfg, tmp_path):
    # A subprocess, because DDP spawns workers that re-run the command line.
    result = subprocess.run(
        [sys.executable, "-m", "pirtune.train", "stage=pretrain", "trainer=ddp",
         "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
         f"run_dir={tmp_path / 'ddp'}",
         "pretrain.iterations=2", "data.resolution=16", "data.num_images=32",
         "data.batch_size=4", "data.cache_dir=null", "model.generator.width=0.125",
         "model.discriminator.width=0.125", "logger=csv", "progress=false"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "ddp" / "generator.pt").is_file()


def test_unknown_group_option_names_the_choices():
    with pytest.raises(UsageError, match=r"data 'photos' is unknown; choose one of: "
                                         r"imagefolder, interactions, landscapes"):
        check_group_overrides(["data=photos"])
    with pytest.raises(UsageError, match="experiment 'gpu'"):
        check_group_overrides(["-m", "experiment=cpu,gpu"])
    check_group_overrides(["experiment=paper", "data.root=/x", "stage=pretrain"])


def test_command_line_errors_are_one_line(tmp_path):
    for args, expected in [
        (["trainer=tpu"], "trainer 'tpu' is unknown; choose one of: cpu, ddp, gpu"),
        (["stage=fly"],
         "stage 'fly' is unknown; choose one of: loop, pretrain, sample, collect, estimate, "
         "tune, evaluate"),
        (["stage=sample", f"generator_ckpt={tmp_path / 'none.pt'}"], "does not exist"),
        (["stage=pretrain", "data=imagefolder"], "data.root must be set; add data.root=<value>"),
        (["stage=pretrain", "model.ema_decay=2"], "model.ema_decay=2 must lie in (0, 1)"),
        (["stage=pretrain", "data=imagefolder", f"data.root={tmp_path / 'nowhere'}",
          "pretrain.iterations=1"],
         f"image folder {tmp_path / 'nowhere'} does not exist"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "pirtune.train", f"run_dir={tmp_path / 'run'}",
             "logger=csv", *args],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr


@pytest.mark.parametrize("launcher, target", [
    ("local", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
])
def test_sweep_launchers_compose(launcher, target):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={launcher}"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == target


def test_imagefolder_option_trains_on_a_folder(make_cfg, tmp_path):
    from pirtune import train
    from pirtune.data.procedural import write_imagefolder

    write_imagefolder(tmp_path / "photos", n=8, resolution=24)
    cfg = make_cfg("data=imagefolder", f"data.root={tmp_path / 'photos'}", "data.num_workers=0",
                   "pretrain.iterations=1")
    datamodule = instantiate(cfg.data)
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (8, 3, 16, 16)
    assert train.run(cfg, "pretrain").is_file()


OBJECTIVES = sorted(p.stem for p in (CONFIG_DIR / "objective").glob("*.yaml"))
ESTIMATORS = sorted(p.stem for p in (CONFIG_DIR / "estimator").glob("*.yaml"))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_objective_options_build_under_their_run_name(make_cfg, objective):
    from pirtune.objectives import build_objective, objective_name

    spec = make_cfg(f"objective={objective}").objective
    if spec._target_ == "pirtune.objectives.VGGObjective":
        assert objective_name(spec) == f"{objective}_k1_s0"
        if spec.layer in ("pool1", "pool2"):  # deeper layers only cost time to build
            built = build_objective({**spec, "weights": "random"})
            assert built.name == objective_name(spec)
    else:
        assert build_objective(spec).name == objective_name(spec) == objective


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimator_options_build(make_cfg, estimator):
    cfg = make_cfg(f"estimator={estimator}")
    network = instantiate(cfg.estimator.network)
    assert network(torch.rand(2, 3, 16, 16)).shape == (2, 100)


def test_a_value_of_the_wrong_type_fails_at_composition(make_cfg):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="tune.steps"):
        make_cfg("tune.steps=many")
    with pytest.raises(ConfigCompositionException, match="collect.impressions"):
        make_cfg("collect.impressions=1.5")


def test_stages_get_their_own_typed_sections(make_cfg):
    from pirtune.stages.config import CollectConfig, EstimatorConfig, TrainConfig, TuneConfig
    from pirtune.train import settings

    typed = settings(make_cfg("objective=color_red", "seed=7", "tune.w_pir=10"))
    assert isinstance(typed, TrainConfig) and isinstance(typed.collect, CollectConfig)
    assert isinstance(typed.tune, TuneConfig) and typed.tune.w_pir == 10.0
    assert isinstance(typed.estimate.estimator, EstimatorConfig)
    # Shared values are interpolated into each section that reads them.
    assert typed.collect.seed == typed.tune.seed == typed.estimate.seed == 7
    # The option's own keys; the other objective kinds' keys are there, null.
    assert {k: v for k, v in typed.collect.objective.items() if v is not None} == {
        "_target_": "pirtune.objectives.ColourObjective", "colours": ["red"]}
    with pytest.raises(UsageError, match="collect.num_images=0 must be at least 1"):
        settings(make_cfg("collect.num_images=0"))
