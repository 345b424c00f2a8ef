"""ACGANModule: each update moves its own network only; pre-training writes and resumes."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pirtune import train
from pirtune.errors import UsageError
from pirtune.models.acgan import ACGANModule
from pirtune.models.bundle import load_bundle, save_bundle


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _moved(before: dict[str, torch.Tensor], module: torch.nn.Module) -> dict[str, bool]:
    return {k: not torch.equal(before[k], v) for k, v in module.named_parameters()}


class _OnlyD(ACGANModule):
    def _generator_update(self, fake, fake_labels, log):
        return {}


class _OnlyG(ACGANModule):
    def _discriminator_update(self, real, real_labels, fake, fake_labels, log):
        return {}


@pytest.mark.parametrize("loss, head", [("paper", "ac"), ("hinge", "ac"),
                                        ("hinge", "projection"), ("paper", "tac")])
@pytest.mark.parametrize("variant, moves", [(_OnlyD, "discriminator"), (_OnlyG, "generator")])
def test_each_update_moves_its_network_and_nothing_else(make_cfg, variant, moves, loss, head):
    # Every head's own parameters (the projection's embedding, TAC's twin) must
    # learn in D's update and stay put in G's.
    cfg = make_cfg(f"model.loss={loss}", f"model.discriminator.head={head}")
    module = instantiate(cfg.model, _target_=f"{variant.__module__}.{variant.__qualname__}")
    datamodule = instantiate(cfg.data)
    g0, d0 = _params(module.generator), _params(module.discriminator)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=datamodule)
    g_moved, d_moved = _moved(g0, module.generator), _moved(d0, module.discriminator)
    if moves == "discriminator":
        if loss == "hinge":
            # At the start every real and fake source value lies inside the margin
            # (|a| < 1), so the hinge's gradient on the source bias is −1 + 1 = 0 exactly.
            assert not d_moved.pop("source.bias")
        assert all(d_moved.values()), [k for k, m in d_moved.items() if not m]
        assert not any(g_moved.values())
    else:
        assert all(g_moved.values()), [k for k, m in g_moved.items() if not m]
        assert not any(d_moved.values())


def test_tiny_pretraining_writes_checkpoints_samples_and_resumes(make_cfg):
    cfg = make_cfg("pretrain.iterations=4", "pretrain.checkpoint_every=2",
                   "pretrain.sample_every=2")
    run = Path(cfg.run_dir)
    bundle = train.run(cfg, "pretrain")

    assert bundle == run / "generator.pt"
    assert {p.name for p in (run / "checkpoints").iterdir()} == {
        "step=4.ckpt", "step=8.ckpt", "last.ckpt"}  # two Lightning steps per iteration
    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert samples == ["iter_0000002.png", "iter_0000004.png"]
    generator, discriminator, meta = load_bundle(bundle)
    assert meta["iteration"] == 4
    metrics = (run / "logs" / "pretrain" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    assert {"pretrain/train/d_loss", "pretrain/train/g_loss", "pretrain/train/d_class_acc",
            "pretrain/train/iteration"} <= set(header)
    # The training's rows (the quality figures have their own, at sample_every).
    metrics = [row for row in metrics
               if row.split(",")[header.index("pretrain/train/iteration")]]
    iterations = [float(row.split(",")[header.index("pretrain/train/iteration")])
                  for row in metrics[1:]]
    assert iterations == [1.0, 2.0, 3.0, 4.0]  # log_every_n_steps=1: every iteration
    # One step per iteration on the loggers' axis, not Lightning's two optimiser steps.
    steps = [int(row.split(",")[header.index("step")]) for row in metrics[1:]]
    assert steps == [0, 1, 2, 3]
    assert tuple(generator(torch.randn(1, 64), torch.tensor([1])).shape) == (1, 3, 16, 16)

    # Running again with more iterations resumes from last.ckpt: step count and
    # optimiser state continue instead of starting over.
    bundle.unlink()
    train.run(make_cfg("pretrain.iterations=6", "pretrain.checkpoint_every=2",
                       "pretrain.sample_every=2"), "pretrain")
    _, _, meta = load_bundle(bundle)
    assert meta["iteration"] == 6
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 12
    d_state, g_state = last["optimizer_states"]
    assert {s["step"].item() for s in g_state["state"].values()} == {6.0}  # Adam's counter
    assert "iter_0000006.png" in {p.name for p in (run / "samples").iterdir()}


def test_finished_stage_is_skipped(make_cfg, caplog):
    caplog.set_level(logging.INFO)
    cfg = make_cfg("pretrain.iterations=1")
    bundle = train.run(cfg, "pretrain")
    stamp = bundle.stat().st_mtime_ns
    train.run(cfg, "pretrain")
    assert bundle.stat().st_mtime_ns == stamp
    assert "already done" in caplog.text


class _Snapshots(L.Callback):
    def __init__(self) -> None:
        self.generators: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.generators.append({k: v.detach().clone()
                                for k, v in pl_module.generator.state_dict().items()})


def test_generator_ema_averages_every_update_and_is_what_ships(make_cfg, tmp_path):
    cfg = make_cfg("model.ema_decay=0.5", "pretrain.iterations=3")
    module = instantiate(cfg.model)
    snapshots = _Snapshots()
    trainer = L.Trainer(max_steps=6, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[snapshots])
    trainer.fit(module, datamodule=instantiate(cfg.data))
    g1, g2, g3 = snapshots.generators
    ema = module.sampler.state_dict()
    for name, value in ema.items():
        if value.is_floating_point():
            # First update copies G; each later one moves halfway towards the new G.
            expected = 0.5 * (0.5 * g1[name] + 0.5 * g2[name]) + 0.5 * g3[name]
            torch.testing.assert_close(value, expected, msg=name)
    assert module.sampler is not module.generator
    assert not any(p.requires_grad for p in module.generator_ema.parameters())

    # The bundle carries the average, not the raw generator (which is g3 now).
    save_bundle(module, OmegaConf.to_container(cfg.model, resolve=True), tmp_path / "bundle.pt")
    generator, _, _ = load_bundle(tmp_path / "bundle.pt")
    shipped = generator.state_dict()
    assert shipped.keys() == ema.keys()
    for name, value in ema.items():
        torch.testing.assert_close(shipped[name], value, rtol=0, atol=0, msg=name)
    differ = [k for k, v in g3.items() if v.is_floating_point() and not torch.equal(shipped[k], v)]
    assert len(differ) > len(g3) // 2, differ


def test_bad_ema_decay_is_refused(make_cfg):
    with pytest.raises(Exception) as info:  # Hydra wraps it; the entry point unwraps it
        instantiate(make_cfg("model.ema_decay=1.5").model)
    assert isinstance(info.value.__cause__, UsageError)
    assert "model.ema_decay=1.5 must lie in (0, 1)" in str(info.value.__cause__)


def test_missing_resume_checkpoint_is_named(make_cfg, tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(UsageError, match=f"ckpt_path {missing} does not exist"):
        train.run(make_cfg(f"pretrain.ckpt_path={missing}"), "pretrain")
