"""Every experiment composes and instantiates; bad group options get one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from pirtune.compose import check_group_overrides
from pirtune.errors import UsageError
from pirtune.paths import CONFIG_DIR

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (CONFIG_DIR / "trainer").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(make_cfg, experiment):
    from pirtune.compose import settings

    cfg = make_cfg(f"experiment={experiment}", "data.num_images=4", "data.batch_size=4",
                   "data.cache_dir=null", tiny=False)
    assert cfg.scale == experiment
    settings(cfg)  # every stage's typed section converts
    module = instantiate(cfg.model)
    datamodule = instantiate(cfg.data)
    # The generator draws what the data holds, and the discriminator reads both.
    images, labels = datamodule.to_model_input(next(iter(datamodule.train_dataloader())))
    with torch.no_grad():
        fake = module.generator(module.sample_latents(4)[0], labels)
        source, classes = module.discriminator(torch.cat([images, fake]),
                                               torch.cat([labels, labels]))
    assert fake.shape == images.shape == (4, 3, cfg.data.resolution, cfg.data.resolution)
    assert source.shape == (8,) and classes.shape == (8, cfg.data.num_classes)
    for spec in cfg.logger.values():
        assert spec._target_.startswith("lightning.pytorch.loggers.")


def test_paper_experiment_builds_the_papers_networks_and_optimisers(make_cfg):
    from pirtune.compose import settings

    cfg = make_cfg("experiment=paper", tiny=False)
    module = instantiate(cfg.model)
    assert (module.latent_dim, module.generator.resolution) == (64, 64)
    # C.1: no normalisation in the generator; the CPU experiment adds batch norm.
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in module.generator.modules())
    assert module.generator_ema is None
    d_opt, g_opt = module.configure_optimizers()
    assert type(g_opt) is torch.optim.Adam and type(d_opt) is torch.optim.RMSprop
    assert (g_opt.defaults["lr"], g_opt.defaults["betas"], d_opt.defaults["lr"]) == (
        1e-5, (0.5, 0.999), 1e-5)
    assert (module.w_fake_class, module.w_real_class) == (1.5, 1.0)
    cpu = instantiate(make_cfg("experiment=cpu", tiny=False).model)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in cpu.generator.modules())
    typed = settings(cfg)
    assert typed.pretrain.iterations == 1_100_000 and typed.stage == "loop"
    # Section 2.4: w_PIR 1000, lr 1e-6, 50,000 steps; section 4: 1000 samples, α 0.001.
    assert (typed.tune.w_pir, typed.tune.lr, typed.tune.steps) == (1000, 1e-6, 50_000)
    assert (typed.evaluate.num_samples, typed.evaluate.alpha) == (1000, 0.001)
    assert typed.estimate.estimator.temperature == 0.01


def test_a_sweep_ends_with_the_report_its_config_names(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pirtune.evaluation import Evaluation, TrainingSet, write_evaluation
    from pirtune.stats import mean_change

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=local"],
                      return_hydra_config=True)
    callback = instantiate(cfg.hydra.callbacks.report)
    # One job of the sweep, linked to its run, which holds one evaluation.
    run, sweep = tmp_path / "runs" / "cpu-color_red", tmp_path / "multirun"
    run.mkdir(parents=True)
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "run").symlink_to(run, target_is_directory=True)
    change = mean_change([0.2, 0.3, 0.25, 0.35], [0.5, 0.6, 0.55, 0.65])
    write_evaluation(Evaluation(
        objective={"name": "color_red", "kind": "colour", "colours": ["red"]}, round=1,
        scale="cpu", estimator_backbone="small_cnn", change=change, predicted=change,
        training_set=TrainingSet(4, 0.3, 0.1, 0.0), generator_before="g.pt",
        generator_after="t.pt", grids={}, tuning={"steps": 2}), run / "evaluation.json")
    OmegaConf.set_struct(cfg, False)
    cfg.hydra.sweep.dir = str(sweep)
    callback.on_multirun_end(cfg)
    assert "| color_red |" in (sweep / "report.md").read_text()


@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainer_options_compose(make_cfg, trainer):
    cfg = make_cfg(f"trainer={trainer}")
    assert cfg.trainer.accelerator in {"cpu", "gpu"}
    if trainer != "cpu":
        assert cfg.trainer.precision == "bf16-mixed"
    if trainer == "ddp":
        assert cfg.trainer.strategy.startswith("ddp")


def test_the_make_run_configuration_builds_its_stages_loggers_and_progress_bar(tmp_path,
                                                                              monkeypatch):
    """`make run` is `pirtune-train` with no arguments: composed and built, not run."""
    import wandb
    from hydra import compose, initialize_config_dir
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from pirtune.compose import settings, the_run
    from pirtune.models.bundle import load_bundle, render
    from pirtune.objectives import build_objective
    from pirtune.stages.tracking import track
    from pirtune.stages.training import trainer

    monkeypatch.setenv("PIRTUNE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no W&B credentials
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[])
    typed = settings(cfg)
    assert typed.stage == "loop"
    run = the_run(cfg)
    assert tmp_path / "runs" in run.dir.parents and run.progress

    # The loop's pieces: the shipped generator draws images the data module's size and
    # classes, the objective scores them, the estimator network reads them.
    generator, discriminator, _ = load_bundle(cfg.generator_ckpt)
    datamodule = instantiate(cfg.data)
    assert (generator.resolution, generator.num_classes) == (datamodule.resolution,
                                                             cfg.data.num_classes)
    labels = torch.arange(4) % generator.num_classes
    images = render(generator, torch.randn(4, generator.latent_dim), labels)
    assert build_objective(cfg.objective)(images).shape == (4,)
    assert instantiate(cfg.estimator.network)(images).shape == (4, cfg.estimator.network.bins)
    source, classes = discriminator(images * 2 - 1, labels)
    assert source.shape == (4,) and classes.shape == (4, cfg.data.num_classes)

    # CSV and W&B loggers (W&B offline without credentials; its run disabled here) and
    # Lightning's rich progress bar.
    inits = []
    real_init = wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kwargs: inits.append(kwargs) or real_init(
        mode="disabled"))
    with track(run, "collect") as tracker:
        fit = trainer(run, [], tracker.loggers, max_steps=1)
    [init] = inits
    assert (init["mode"], init["project"], init["group"], init["job_type"]) == (
        "offline", "pirtune", run.name, "collect")
    assert [type(logger) for logger in fit.loggers] == [CSVLogger, WandbLogger]
    assert isinstance(fit.progress_bar_callback, RichProgressBar)
    assert (run.dir / "logs" / "collect").is_dir()


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
    from pirtune.models.bundle import load_bundle

    write_imagefolder(tmp_path / "photos", n=8, resolution=24)
    cfg = make_cfg("data=imagefolder", f"data.root={tmp_path / 'photos'}", "data.num_workers=0",
                   "pretrain.iterations=1")
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    # Every photo, labelled by its folder (the classes in sorted order).
    folders = sorted(p.name for p in (tmp_path / "photos").iterdir())
    assert sorted((Path(path).parent.name, label) for path, label in
                  datamodule.train_set.samples) == sorted(
        (Path(path).parent.name, folders.index(Path(path).parent.name))
        for path in map(str, (tmp_path / "photos").rglob("*.png")))
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (8, 3, 16, 16)
    bundle = train.run(cfg, "pretrain")
    generator, _, meta = load_bundle(bundle)
    assert meta["provenance"]["data"]["root"] == str(tmp_path / "photos")
    assert (generator.resolution, generator.num_classes) == (16, len(folders))


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
def test_estimator_options_build_a_trainable_estimator_for_the_data(make_cfg, estimator):
    from pirtune.estimator import PIREstimatorModule

    cfg = make_cfg(f"estimator={estimator}")
    network = instantiate(cfg.estimator.network)
    module = PIREstimatorModule(network, instantiate(cfg.estimator.optimizer))
    optimizer = module.configure_optimizers()
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in network.parameters()}
    seen = []
    network.backbone.register_forward_pre_hook(lambda _module, args: seen.append(args[0].shape))
    with torch.no_grad():
        logits = network.eval()(torch.rand(2, 3, 16, 16))
    assert logits.shape == (2, 100) and not torch.allclose(logits[0], logits[1])
    # Small backbones work at the data's resolution; Inception always at 299 px.
    size = 299 if estimator == "inception_v3" else cfg.data.resolution
    assert seen == [(2, 3, size, size)]


def test_a_value_of_the_wrong_type_fails_at_composition(make_cfg):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="tune.steps"):
        make_cfg("tune.steps=many")
    with pytest.raises(ConfigCompositionException, match="collect.impressions"):
        make_cfg("collect.impressions=1.5")


def test_stages_get_their_own_typed_sections(make_cfg):
    from pirtune.compose import settings
    from pirtune.stages.config import CollectConfig, EstimatorConfig, TrainConfig, TuneConfig

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
    # Early stopping: off for the binned estimator, on (5 epochs) for the web app's picks.
    assert typed.estimate.estimator.patience == 0 and typed.estimate.estimator.calibrate
    assert settings(make_cfg("data=interactions", "data.path=x.db", tiny=False)
                    ).estimate.estimator.patience == 5
    with pytest.raises(UsageError, match="estimator.patience=-1 must be 0"):
        settings(make_cfg("estimator.patience=-1"))
