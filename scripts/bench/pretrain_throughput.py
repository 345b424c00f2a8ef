"""Pre-training throughput: ACGANModule under Lightning against a plain PyTorch loop.

Both sides use the same networks, optimisers, batch size and data (the
procedural landscapes, uint8 in memory, converted on the device), and do the
same work per iteration: one discriminator update, then one generator update.
Prints iterations per second for each and their ratio.

``--whole-step`` runs both as one CUDA graph per iteration (on the CPU, the
same step from static buffers, uncaptured): Lightning through
``model.whole_step=graph``, the plain loop through the same
``WholeStepGraph``. ``--tune`` times ``PIRTuningModule`` instead (Lightning
only), with a randomly initialised frozen estimator built from ``estimator``'s
network config: the work per step, not its results, is what is measured.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench/pretrain_throughput.py \
        --json docs/bench/throughput.json                                  # CPU default
    python scripts/bench/pretrain_throughput.py experiment=paper trainer=gpu \
        --compile reduce-overhead                                          # one GPU

Run it alone: on a 2-core machine a second busy process distorts the figures.
Extra arguments of the form key=value are Hydra overrides of conf/train.yaml.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from pirtune.compose import register_resolvers
from pirtune.estimator.frozen import FrozenPIREstimator
from pirtune.models.acgan import STEPS_PER_ITERATION, ACGANModule, _make_capturable
from pirtune.models.losses import discriminator_loss, generator_loss
from pirtune.models.step_graph import WholeStepGraph
from pirtune.models.tuning import PIRTuningModule
from pirtune.paths import CONFIG_DIR


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(module: ACGANModule, datamodule, device: torch.device, warmup: int, iters: int,
               bf16: bool, whole_step: str | None = None) -> float:
    """Iterations per second of a hand-written loop over the module's own networks."""
    g, d = module.generator.to(device), module.discriminator.to(device)  # keeps channels-last
    d_opt = module.d_optimizer(d.parameters())
    g_opt = module.g_optimizer(g.parameters())
    # Inside one graph, autocast's cast cache would outlive D's optimiser step (ACGANModule).
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=not whole_step)
                if bf16 else contextlib.nullcontext())
    graphs = module.compile_mode == "reduce-overhead"

    def run(network, *inputs):
        # As ACGANModule._run: copy outputs out of a CUDA graph's reused buffers.
        out = network(*inputs)
        return tuple(t.clone() for t in out) if graphs else out

    step = _plain_step(g, d, d_opt, g_opt, module, autocast, run, graphs)
    if whole_step:
        capture = whole_step == "graph" and device.type == "cuda"
        if capture:
            _make_capturable(d_opt)
            _make_capturable(g_opt)
        step = WholeStepGraph(step, capture=capture, channels_last=module.channels_last)

    loader = datamodule.train_dataloader()
    batches = iter(loader)
    start = 0.0
    for i in range(warmup + iters):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        real, real_labels = datamodule.to_model_input([t.to(device) for t in batch])
        step(real, real_labels)
    _sync(device)
    return iters / (time.perf_counter() - start)


def _plain_step(g, d, d_opt, g_opt, module: ACGANModule, autocast, run, graphs: bool):
    """One D and one G update of the plain loop, as a function of the batch."""
    device = next(g.parameters()).device

    def step(real: torch.Tensor, real_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        z = torch.randn(real.shape[0], g.latent_dim, device=device)
        labels = torch.randint(g.num_classes, (real.shape[0],), device=device)
        with autocast:
            fake = g(z, labels)
            fake = fake.clone() if graphs else fake
            real_source, real_logits = run(d, real)
            fake_source, _ = run(d, fake.detach())
            d_loss = discriminator_loss(real_source, fake_source, real_logits, real_labels,
                                        module.w_real_class).total
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        d.requires_grad_(False)
        with autocast:
            fake_source, fake_logits = run(d, fake)
            g_loss = generator_loss(fake_source, fake_logits, labels, module.w_fake_class).total
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        d.requires_grad_(True)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    return step


class _Timer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.count = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.count == self.warmup:
            _sync(pl_module.device)
            self.start = time.perf_counter()
        self.count += 1

    def on_train_end(self, trainer, pl_module) -> None:
        _sync(pl_module.device)
        self.end = time.perf_counter()


def lightning_loop(module: ACGANModule, datamodule, trainer_cfg, warmup: int,
                   iters: int) -> float:
    """Iterations per second of ``Trainer.fit`` on the module."""
    timer = _Timer(warmup)
    trainer = instantiate(
        trainer_cfg, max_steps=STEPS_PER_ITERATION * (warmup + iters), logger=False,
        enable_checkpointing=False, enable_progress_bar=False, callbacks=[timer],
        default_root_dir=None,
    )
    trainer.fit(module, datamodule=datamodule)
    return iters / (timer.end - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=60, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--compile", default=None,
                        help="torch.compile mode for both networks (e.g. reduce-overhead)")
    parser.add_argument("--whole-step", nargs="?", const="graph", choices=["graph", "static"],
                        help="each iteration as one CUDA graph (model.whole_step=graph), or "
                             "its step uncaptured (static: what the CPU can run)")
    parser.add_argument("--channels-last", action="store_true",
                        help="channels-last conv weights (model.channels_last=true)")
    parser.add_argument("--tune", action="store_true",
                        help="time PIRTuningModule (Lightning only) with estimator's network")
    parser.add_argument("--json", default=None,
                        help="also add the figures to this JSON list (docs/bench/throughput.json)")
    args, overrides = parser.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train",
                      overrides=["logger=csv", "data.num_images=2048", *overrides])
    L.seed_everything(0)
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    accelerator = cfg.trainer.accelerator
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    bf16 = str(cfg.trainer.precision).startswith("bf16")

    options = {"compile_mode": args.compile, "channels_last": args.channels_last,
               "whole_step": args.whole_step}
    plain = None
    if args.tune:
        module = _tuning_module(cfg, options)
    else:
        module = instantiate(cfg.model, **options)
        module.configure_model()
        plain = plain_loop(module, datamodule, device, args.warmup, args.iters, bf16,
                           args.whole_step)
        module = instantiate(cfg.model, **options)
    lightning = lightning_loop(module, datamodule, cfg.trainer, args.warmup, args.iters)
    captured = module.step_graph is not None and module.step_graph.captured
    result = {
        "module": type(module).__name__,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "scale": cfg.scale,
        "resolution": cfg.data.resolution,
        "batch": cfg.data.batch_size,
        "precision": str(cfg.trainer.precision),
        "compile": args.compile,
        "whole_step": options["whole_step"],
        "graph_captured": captured,  # False on the CPU: the same step, uncaptured
        "channels_last": args.channels_last,
        "estimator": cfg.estimator.network.get("backbone", "small_cnn") if args.tune else None,
        "timed_iterations": args.iters,
        "load_average_1min": round(os.getloadavg()[0], 1),  # other jobs on the machine
        "plain_it_per_s": None if plain is None else round(plain, 2),
        "lightning_it_per_s": round(lightning, 2),
        "lightning_over_plain": None if plain is None else round(lightning / plain, 3),
    }
    print(json.dumps(result))
    if args.json:
        path = Path(args.json)
        rows = json.loads(path.read_text()) if path.is_file() else []
        path.write_text(json.dumps([*rows, result], indent=1) + "\n")


def _tuning_module(cfg, options: dict) -> PIRTuningModule:
    """A tuning module on freshly initialised networks and a random frozen estimator."""
    gan = instantiate(cfg.model)
    optimizers = {name: instantiate(cfg.model[name], lr=cfg.tune.lr)
                  for name in ("g_optimizer", "d_optimizer")}
    estimator = FrozenPIREstimator(instantiate(cfg.estimator.network),
                                   temperature=cfg.estimator.temperature)
    return PIRTuningModule(gan.generator, gan.discriminator, estimator, **optimizers,
                           w_pir=cfg.tune.w_pir, w_fake_class=cfg.model.w_fake_class,
                           w_real_class=cfg.model.w_real_class, **options)


if __name__ == "__main__":
    main()
