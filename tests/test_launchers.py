"""Where runs go: the SLURM launcher's sbatch script, requeue and resume, and the trainer
configs for one and several GPUs built into Lightning objects."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import lightning as L
import pytest
import submitit
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

from pirtune import train
from pirtune.models.bundle import load_bundle
from pirtune.paths import CONFIG_DIR

pretrain_stage = __import__("pirtune.stages.pretrain", fromlist=["pretrain"])


def _compose(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3",
                               job_name="pirtune"):
        return compose(config_name="train", overrides=list(overrides),
                       return_hydra_config=hydra)


def test_the_slurm_launcher_submits_requeueable_gpu_jobs(tmp_path, monkeypatch):
    cfg = _compose("hydra/launcher=slurm", "experiment=paper", "trainer=gpu",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.launcher.partition=gpu",
                   "hydra.launcher.account=lab", "hydra.launcher.qos=normal", hydra=True)
    # submitit looks for srun on the PATH; this machine is no cluster.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=lambda _: None, config=cfg)
    # The launcher builds its executor and maps its jobs onto it: stop there, submit nothing.
    executors = []
    monkeypatch.setattr(submitit.AutoExecutor, "map_array",
                        lambda self, *_: executors.append(self) or [])
    assert launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0) == []

    [executor] = executors
    slurm = executor._executor
    assert isinstance(slurm, submitit.SlurmExecutor)
    # Requeued on timeout (submitit calls the launcher's checkpoint(), which resubmits it).
    assert slurm.max_num_timeout == 10
    script = slurm._make_submission_file_text("pirtune-train ...", "uid")
    sbatch = dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script, flags=re.MULTILINE))
    assert {key: sbatch[key] for key in ("time", "signal", "gpus-per-node", "cpus-per-task",
                                         "mem", "nodes", "ntasks-per-node", "partition",
                                         "account", "qos", "open-mode")} == {
        "time": "240", "signal": "USR2@300", "gpus-per-node": "1", "cpus-per-task": "8",
        "mem": "32GB", "nodes": "1", "ntasks-per-node": "1", "partition": "gpu",
        "account": "lab", "qos": "normal", "open-mode": "append"}
    assert sbatch["job-name"] == "pirtune"
    # Logs go beside the sweep, one folder per SLURM job.
    assert sbatch["output"].startswith(str(tmp_path / "sweep" / ".submitit"))
    assert "export OMP_NUM_THREADS=8" in script


class _Stop(L.Callback):
    """Ends the run mid-way, as SLURM ends a job at its time limit."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration == 3:
            raise RuntimeError("time limit")


def test_a_requeued_pretraining_resumes_from_last_ckpt(tmp_path, monkeypatch, tiny_overrides,
                                                       caplog):
    # A requeued job runs the same command: the same name finds the same run directory.
    monkeypatch.setenv("PIRTUNE_HOME", str(tmp_path))
    command = ["stage=pretrain", *tiny_overrides, "pretrain.iterations=4",
               "pretrain.checkpoint_every=2", "pretrain.quality_samples=0"]
    real_trainer = pretrain_stage.gan_trainer
    monkeypatch.setattr(pretrain_stage, "gan_trainer", lambda run, callbacks, *args:
                        real_trainer(run, [*callbacks, _Stop()], *args))
    with pytest.raises(RuntimeError, match="time limit"):
        train.run(_compose(*command))
    monkeypatch.undo()
    monkeypatch.setenv("PIRTUNE_HOME", str(tmp_path))
    cfg = _compose(*command)
    run = Path(cfg.run_dir)
    assert run.parent == tmp_path / "runs" and (run / "checkpoints" / "last.ckpt").is_file()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    first_half = (run / "checkpoints" / "step=4.ckpt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="pirtune.stages"):
        bundle = train.run(cfg)
    assert f"pretrain: resuming from {run / 'checkpoints' / 'last.ckpt'}" in caplog.text
    assert load_bundle(bundle)[2]["iteration"] == 4
    # Iterations 1-2 were not trained again: their checkpoint is the first job's.
    assert (run / "checkpoints" / "step=4.ckpt").stat().st_mtime_ns == first_half
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 8


def _trainer(cfg, **cpu) -> L.Trainer:
    return instantiate(cfg.trainer, **cpu, logger=False, enable_checkpointing=False)


def test_the_gpu_trainer_is_one_device_in_bf16():
    cfg = _compose("trainer=gpu")
    assert (cfg.trainer.accelerator, cfg.trainer.devices) == ("gpu", 1)
    # Built here on the CPU (bf16 autocast exists there too); on a GPU as it is.
    for trainer in [_trainer(cfg, accelerator="cpu"),
                    *([_trainer(cfg)] if torch.cuda.is_available() else [])]:
        assert isinstance(trainer.strategy, SingleDeviceStrategy)
        assert trainer.precision == "bf16-mixed" and trainer.num_devices == 1


def test_the_ddp_trainer_finds_unused_parameters_on_every_device():
    cfg = _compose("trainer=ddp")
    assert (cfg.trainer.accelerator, cfg.trainer.devices) == ("gpu", -1)
    trainer = _trainer(cfg, accelerator="cpu", devices=2)
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.num_devices == 2
    # The D update leaves G without gradients: DDP must not wait for them.
    assert trainer.strategy._ddp_kwargs["find_unused_parameters"] is True
    assert trainer.precision == "bf16-mixed"
    if torch.cuda.is_available():
        on_gpus = _trainer(cfg)
        assert isinstance(on_gpus.strategy, DDPStrategy)
        assert on_gpus.num_devices == torch.cuda.device_count()


def test_under_slurm_lightning_uses_its_slurm_environment(monkeypatch):
    for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "pirtune",
                       "SLURM_NODELIST": "node1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
                       "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)
    trainer = _trainer(_compose("trainer=cpu"))
    environment = trainer._accelerator_connector.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and environment.job_id() == 7
