"""The whole-step path (model.whole_step): the same parameters as Lightning's eager step.

On the CPU, ``whole_step="static"`` runs the function the CUDA graph captures,
eagerly from its static buffers, and must leave every parameter, buffer and
EMA weight where the ordinary step leaves them on the same batches and seed.
With CUDA, the captured graph is compared with that same function.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pirtune.errors import UsageError
from pirtune.estimator.frozen import FrozenPIREstimator
from pirtune.estimator.network import bin_centres
from pirtune.models.acgan import ACGANModule
from pirtune.models.networks import Generator
from pirtune.models.step_graph import ema_update
from pirtune.models.tuning import PIRTuningModule

ITERATIONS = 3


def _fit(module: ACGANModule, datamodule, accelerator: str = "cpu",
         iterations: int = ITERATIONS, precision: str = "32-true") -> ACGANModule:
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_steps=2 * iterations, accelerator=accelerator, devices=1,
                        precision=precision, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=1)
    trainer.fit(module, datamodule=datamodule)
    return module


def _state(module: ACGANModule) -> dict[str, torch.Tensor]:
    """Every tensor the step changes: both networks, the EMA, G₀, the optimisers' state."""
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    for i, optimizer in enumerate(module.trainer.optimizers):
        for j, param_state in enumerate(optimizer.state.values()):
            for key, value in param_state.items():
                if isinstance(value, torch.Tensor) and key != "step":
                    state[f"optimizer{i}/{j}/{key}"] = value.detach().cpu().clone()
    return state


def _assert_same(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor],
                 **tolerance: float) -> None:
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        torch.testing.assert_close(value, theirs[name], msg=name, **tolerance)


GAN_VARIANTS = {
    "paper": [],
    "hinge-augment-spectral-ema": ["model.loss=hinge", "model.augment='color,translation,cutout'",
                                   "model.discriminator.norm=spectral",
                                   "model.generator.norm=batch", "model.ema_decay=0.9"],
}


@pytest.mark.parametrize("variant", GAN_VARIANTS)
def test_the_whole_step_leaves_the_eager_steps_parameters(make_cfg, variant):
    cfg = make_cfg(*GAN_VARIANTS[variant])
    datamodule = instantiate(cfg.data)
    states = {}
    for whole_step in (None, "static", "graph"):
        L.seed_everything(1, verbose=False)
        module = _fit(instantiate(cfg.model, whole_step=whole_step), datamodule)
        assert module.global_step == 2 * ITERATIONS
        # "graph" is eager on the CPU: no step graph is built.
        assert (module.step_graph is not None) == (whole_step == "static")
        states[whole_step] = _state(module)
        logged = module.trainer.callback_metrics
        assert float(logged["pretrain/train/iteration"]) == ITERATIONS
        states[whole_step]["logged d_loss"] = logged["pretrain/train/d_loss"].cpu()
        states[whole_step]["logged g_loss"] = logged["pretrain/train/g_loss"].cpu()
    _assert_same(states["static"], states[None])
    _assert_same(states["graph"], states[None], rtol=0, atol=0)


class MeanBlue(nn.Module):
    """A stand-in estimator network: logits peaked at the images' mean blue."""

    bins = 20

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        blue = self.mix(images)[:, 2].mean((1, 2))  # [B, 3, H, W] -> [B]
        centres = bin_centres(self.bins, device=images.device)
        return -((centres[None] - blue[:, None]) ** 2) * 1e2  # [B, bins]


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_the_whole_tuning_step_leaves_the_eager_steps_parameters(make_cfg, tiny_generator,
                                                                  ema_decay):
    cfg = make_cfg()
    datamodule = instantiate(cfg.data)
    states = {}
    for whole_step in (None, "static"):
        torch.manual_seed(0)
        estimator = FrozenPIREstimator(MeanBlue(), temperature=0.01)
        module, _ = PIRTuningModule.from_bundle(
            str(tiny_generator), estimator, lr=1e-3, w_pir=100, anchor=1.0,
            ema_decay=ema_decay, whole_step=whole_step)
        states[whole_step] = _state(_fit(module, datamodule))
        states[whole_step]["logged anchor"] = (
            module.trainer.callback_metrics["tune/train/anchor_distance"].cpu())
    _assert_same(states["static"], states[None])
    assert float(states[None]["logged anchor"]) > 0  # G moved, and the anchor saw it


def test_ema_update_is_averaged_models_ema_without_host_reads():
    torch.manual_seed(0)
    network = Generator(latent_dim=4, num_classes=2, resolution=8, width=0.0625, norm="batch")
    theirs = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(0.7), use_buffers=True)
    ours = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(0.7), use_buffers=True)
    for _ in range(3):
        with torch.no_grad():
            for p in network.parameters():
                p.add_(torch.randn_like(p))
            network(torch.randn(4, 4), torch.tensor([0, 1, 0, 1]))  # moves batch-norm stats
        theirs.update_parameters(network)
        ema_update(ours.module, network, ours.n_averaged, 0.7)
    _assert_same(ours.state_dict(), theirs.state_dict())


@pytest.mark.parametrize("overrides, message", [
    (["model.whole_step=graph", "model.r1_gamma=1"], "cannot capture R1's double backward"),
    (["model.whole_step=graph", "model.compile_mode=reduce-overhead"], "captures CUDA graphs"),
    (["model.whole_step=always"], "model.whole_step='always' is unknown"),
])
def test_what_the_whole_step_cannot_capture_is_refused(make_cfg, overrides, message):
    with pytest.raises(Exception) as info:  # Hydra wraps it; the entry point unwraps it
        instantiate(make_cfg(*overrides).model)
    assert isinstance(info.value.__cause__, UsageError)
    assert message in str(info.value.__cause__)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_the_captured_graph_leaves_the_static_steps_parameters_on_cuda(make_cfg, precision):
    """Three eager warm-up iterations, the capture, then replays: as the same step uncaptured.

    Both draw the same numbers from the CUDA generator (a graph registers it and
    advances its offset per replay as the eager kernels would); the captured
    optimisers are the capturable variants, hence a tolerance.
    """
    cfg = make_cfg("model.augment='translation,cutout'", "model.ema_decay=0.9")
    datamodule = instantiate(cfg.data)
    states = {}
    for whole_step in ("static", "graph"):
        L.seed_everything(1, verbose=False)
        module = instantiate(cfg.model, whole_step=whole_step, channels_last=True)
        _fit(module, datamodule, accelerator="gpu", iterations=6, precision=precision)
        assert module.global_step == 12
        states[whole_step] = _state(module)
    assert module.step_graph.captured
    _assert_same(states["graph"], states["static"], rtol=1e-3, atol=1e-5)
