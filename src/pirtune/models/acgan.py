"""ACGANModule: alternating discriminator and generator updates (PIR paper, C.1).

Manual optimisation: each batch makes one discriminator update, then one
generator update on the same fake images re-scored by the updated
discriminator. Lightning counts one ``global_step`` per optimiser update, so
one training *iteration* (a D and a G update) is two Lightning steps;
``iteration`` gives the paper's count of gradient steps per network.

On CUDA, ``whole_step="graph"`` runs the D and G updates of an iteration as
one CUDA graph (``pirtune.models.step_graph``); on the CPU the step stays
eager.

The trained networks leave the Lightning checkpoint as a *generator bundle*
(``save_bundle``/``load_bundle``): both networks' weights, the config that
builds them and a little provenance, which is what later stages and the
shipped CPU model use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision.utils import save_image

from pirtune.errors import UsageError
from pirtune.models.augment import diff_augment, parse_policy
from pirtune.models.bundle import class_grid
from pirtune.models.losses import SourceLoss, discriminator_loss, generator_loss
from pirtune.models.networks import DiscriminatorOutput
from pirtune.models.step_graph import WholeStepGraph, ema_update

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
STEPS_PER_ITERATION = 2  # Lightning counts the D and the G update separately
WHOLE_STEP_MODES = ("graph", "static")
# torch.compile modes that capture CUDA graphs of their own, which cannot nest in ours.
GRAPHING_COMPILE_MODES = ("reduce-overhead", "max-autotune")


class ACGANModule(L.LightningModule):
    """Trains an ACGAN generator and discriminator with the paper's losses.

    Args:
        generator: maps (z [B, latent], class [B]) to images [B, 3, R, R] in [-1, 1].
        discriminator: maps images to (pre-tanh source [B], class logits [B, C]).
        g_optimizer: partial optimizer for the generator (paper: Adam, lr 1e-5, β1 0.5).
        d_optimizer: partial optimizer for the discriminator (paper: RMSProp, lr 1e-5).
        w_fake_class: weight of the generator's class term (paper: 1.5).
        w_real_class: weight of the discriminator's class term (paper: 1.0).
        ema_decay: ``None``, or the decay of an exponential moving average of the
            generator's weights (and batch-norm statistics), updated after every G
            update. The average, not the raw generator, then draws sample grids and
            leaves training in the bundle: it smooths the iteration-to-iteration
            jitter of GAN training (as in ProGAN/StyleGAN). Not in the paper.
        compile_mode: ``None``, or a ``torch.compile`` mode for both networks
            (``"reduce-overhead"`` captures CUDA graphs: the GPU fast path).
        loss: ``"paper"`` (C.1's log-likelihoods) or ``"hinge"`` for the source
            terms (``pirtune.models.losses``). Not in the paper.
        augment: ``None``, or a DiffAugment policy such as
            ``"translation,cutout"`` applied to every image D sees, real and
            fake, in both updates (``pirtune.models.augment``). Not in the paper.
        r1_gamma: weight γ of the R1 penalty γ/2·E‖∇ₓ a(x_real)‖² on the
            discriminator's source value at real images (Mescheder et al.
            2018); 0 turns it off. Not in the paper.
        whole_step: ``None`` (Lightning's eager step), ``"graph"`` or ``"static"``.
            ``"graph"``: on CUDA, the whole iteration — G's forward, D's update
            (both forwards, backward, optimiser step), G's update (D's forward,
            any estimator or anchor term, backward, optimiser step) and the
            EMA — is captured once as one CUDA graph and replayed for every
            batch, from static input buffers, after three eager warm-up
            iterations; on the CPU it changes nothing. ``"static"``: the same
            step function run eagerly from the same static buffers on any
            device (no capture): what the equivalence tests compare with the
            eager step. Both draw latents on the device (the eager step draws
            them on the CPU), and step the raw optimisers, so Lightning's
            ``on_before_backward``/``on_after_backward``/
            ``on_before_optimizer_step`` hooks do not run; Lightning's step
            count advances as usual. Refused with ``r1_gamma`` > 0 (R1's
            double backward is not captured), with a ``compile_mode`` that
            captures graphs itself (``reduce-overhead``, ``max-autotune``:
            use ``default`` or ``max-autotune-no-cudagraphs`` inside the
            graph), and under fp16 mixed precision (its gradient scaler reads
            values on the host); fp32 and bf16 work.
        channels_last: store both networks' conv weights (and the captured
            step's image buffer) channels-last: faster convolutions on tensor
            cores, the same results.
    """

    log_prefix = "pretrain/train"  # metric names: <log_prefix>/d_loss, ...

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        g_optimizer: OptimizerFactory,
        d_optimizer: OptimizerFactory,
        w_fake_class: float = 1.5,
        w_real_class: float = 1.0,
        ema_decay: float | None = None,
        compile_mode: str | None = None,
        loss: SourceLoss = "paper",
        augment: str | None = None,
        r1_gamma: float = 0.0,
        whole_step: str | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        # The networks (and the tuning module's estimator) are saved as weights; the
        # optimiser factories are partials, which a weights-only load would refuse.
        self.save_hyperparameters(ignore=["generator", "discriminator", "estimator",
                                          "g_optimizer", "d_optimizer"])
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.w_fake_class = w_fake_class
        self.w_real_class = w_real_class
        self.compile_mode = compile_mode
        if loss not in ("paper", "hinge"):
            raise UsageError(f"model.loss={loss!r} is unknown; choose paper or hinge")
        if r1_gamma < 0:
            raise UsageError(f"model.r1_gamma={r1_gamma} must be ≥ 0 (0 turns R1 off)")
        self.loss = loss
        self.augmentations = parse_policy(augment)
        self.r1_gamma = r1_gamma
        if whole_step is not None and whole_step not in WHOLE_STEP_MODES:
            raise UsageError(f"model.whole_step={whole_step!r} is unknown; choose null, graph "
                             "or static")
        if whole_step and r1_gamma:
            raise UsageError(f"model.whole_step={whole_step} cannot capture R1's double "
                             f"backward (model.r1_gamma={r1_gamma}); set model.whole_step=null "
                             "or model.r1_gamma=0")
        if whole_step and compile_mode in GRAPHING_COMPILE_MODES:
            raise UsageError(f"model.compile_mode={compile_mode} captures CUDA graphs itself, "
                             f"which cannot nest in model.whole_step={whole_step}; use "
                             "compile_mode=default or max-autotune-no-cudagraphs")
        self.whole_step = whole_step
        self.channels_last = channels_last
        self.step_graph: WholeStepGraph | None = None
        self.ema_decay = ema_decay
        self.step_latents: tuple[torch.Tensor, torch.Tensor] | None = None
        self.generator_ema: AveragedModel | None = None
        if ema_decay is not None:
            if not 0 < ema_decay < 1:
                raise UsageError(f"model.ema_decay={ema_decay} must lie in (0, 1), or be null")
            self.generator_ema = AveragedModel(
                generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True
            )
            self.generator_ema.requires_grad_(False)

    @property
    def sampler(self) -> nn.Module:
        """The generator that draws samples: the moving average when there is one."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes

    @property
    def iteration(self) -> int:
        """Completed (D, G) update pairs."""
        return self.global_step // STEPS_PER_ITERATION

    def configure_model(self) -> None:
        if self.channels_last:
            # In place (4-D tensors only): parameter objects, names and values are unchanged.
            networks = [self.generator, self.discriminator]
            if self.generator_ema is not None:
                networks.append(self.generator_ema)
            for network in networks:
                network.to(memory_format=torch.channels_last)
        if self.compile_mode:
            # In place, so parameter names (and checkpoints) are unchanged.
            self.generator.compile(mode=self.compile_mode)
            self.discriminator.compile(mode=self.compile_mode)

    def configure_optimizers(self):
        return (
            self.d_optimizer(self.discriminator.parameters()),
            self.g_optimizer(self.generator.parameters()),
        )

    def sample_latents(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ N(0, I) [n, latent] and classes uniform over the classes [n]."""
        z = torch.randn(n, self.latent_dim, generator=generator, device="cpu")
        labels = torch.randint(self.num_classes, (n,), generator=generator, device="cpu")
        return z.to(self.device), labels.to(self.device)

    @property
    def _cuda_graphs(self) -> bool:
        return self.compile_mode == "reduce-overhead"

    def _run(self, network: nn.Module, *inputs: torch.Tensor):
        """Call a network; under CUDA graphs, copy its outputs out of the graph's memory.

        A captured graph reuses its output buffers on the next replay, and D runs
        three times per iteration, so outputs are cloned (a few KiB) before reuse.
        """
        out = network(*inputs)
        if not self._cuda_graphs:
            return out
        if isinstance(out, DiscriminatorOutput):
            return DiscriminatorOutput(*(t if t is None else t.clone() for t in
                                         (out.source, out.class_logits, out.twin_logits)))
        return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()

    def _discriminate(self, images: torch.Tensor, labels: torch.Tensor) -> DiscriminatorOutput:
        """D's outputs for ``images`` of classes ``labels``, augmented when ``augment`` asks."""
        if self.augmentations:
            images = diff_augment(images, self.augmentations)
        return self._run(self.discriminator.heads, images, labels)

    def _logging_now(self) -> bool:
        # Lightning writes step metrics every `log_every_n_steps` batches (one
        # batch is one iteration here) and on the last; computing the
        # diagnostics on the other steps only adds kernel launches.
        every = self.trainer.log_every_n_steps
        return every > 0 and ((self.iteration + 1) % every == 0 or self.trainer.should_stop)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if self._whole_step_active:
            return self._whole_training_step(*batch)
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        real, real_labels = batch
        z, fake_labels = self.sample_latents(real.shape[0])
        # The step's latents, for generator losses that compare with another generator's
        # output for the same (z, c) (the tuning module's stay-close anchor).
        self.step_latents = (z, fake_labels)
        fake = self._run(self.generator, z, fake_labels)
        log = self._logging_now()
        d_metrics = self._discriminator_update(real, real_labels, fake.detach(), fake_labels,
                                               log)
        g_metrics = self._generator_update(fake, fake_labels, log)
        if log:
            # Both updates are done, so `iteration` already counts this one.
            metrics = {**d_metrics, **g_metrics, "iteration": float(self.iteration)}
            self.log_dict({f"{self.log_prefix}/{k}": v for k, v in metrics.items()},
                          on_step=True, on_epoch=False)

    def _discriminator_update(
        self, real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor,
        fake_labels: torch.Tensor, log: bool
    ) -> dict[str, torch.Tensor]:
        d_opt, _ = self.optimizers()
        total, metrics = self._discriminator_objective(real, real_labels, fake, fake_labels, log)
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        d_opt.step()
        return metrics

    def _discriminator_objective(
        self, real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor,
        fake_labels: torch.Tensor, log: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D's loss (C.1, plus R1 when asked) and, when ``log``, its logged parts."""
        if self.r1_gamma:
            real = real.detach().requires_grad_(True)
        real_out = self._discriminate(real, real_labels)
        fake_out = self._discriminate(fake, fake_labels)
        real_source, real_class_logits = real_out.source, real_out.class_logits
        fake_source = fake_out.source
        loss = discriminator_loss(
            real_source, fake_source, real_class_logits, real_labels, self.w_real_class,
            self.loss, fake_out.twin_logits, fake_labels,
        )
        total = loss.total
        if self.r1_gamma:
            (grad,) = torch.autograd.grad(real_source.sum(), real, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            total = total + self.r1_gamma / 2 * r1
        if not log:
            return total, {}
        extra = {"d_r1": r1.detach()} if self.r1_gamma else {}
        if loss.fake_twin is not None:
            extra["d_fake_twin"] = loss.fake_twin.detach()
        return total, {**extra,
            "d_loss": loss.total.detach(),
            "d_real": loss.real.detach(),
            "d_fake": loss.fake.detach(),
            "d_real_class": loss.real_class.detach(),
            "d_real_acc": (real_source > 0).float().mean(),
            "d_fake_acc": (fake_source < 0).float().mean(),
            "d_class_acc": (real_class_logits.argmax(1) == real_labels).float().mean(),
        }

    def _generator_update(
        self, fake: torch.Tensor, fake_labels: torch.Tensor, log: bool
    ) -> dict[str, torch.Tensor]:
        _, g_opt = self.optimizers()
        # Freezing D for this update spares computing its gradients (and leaves them untouched).
        self.toggle_optimizer(g_opt)
        loss, parts = self._generator_objective(fake, fake_labels)
        g_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        g_opt.step()
        self.untoggle_optimizer(g_opt)
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)
        if not log:
            return {}
        return {"g_loss": loss.detach(), **{k: v.detach() for k, v in parts.items()}}

    def _generator_objective(
        self, fake: torch.Tensor, fake_labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator's loss on ``fake`` and its logged parts (C.1)."""
        out = self._discriminate(fake, fake_labels)
        loss = generator_loss(out.source, out.class_logits, fake_labels, self.w_fake_class,
                              self.loss, out.twin_logits)
        return loss.total, {"g_fools": loss.fools, "g_fake_class": loss.fake_class}

    # -- the whole iteration as one function (whole_step): what the CUDA graph captures --

    @property
    def _whole_step_active(self) -> bool:
        return self.whole_step == "static" or (
            self.whole_step == "graph" and self.device.type == "cuda")

    def _whole_training_step(self, real: torch.Tensor, real_labels: torch.Tensor) -> None:
        """The training step through ``WholeStepGraph`` (``whole_step``)."""
        if self.step_graph is None:
            self.step_graph = self._build_step_graph()
        log = self._logging_now()
        metrics = self.step_graph(real, real_labels)
        # Lightning counts manual-optimisation steps in LightningOptimizer.step's hooks;
        # the step stepped the raw optimisers, so advance the count as step() would.
        for optimizer in self.optimizers():
            optimizer._on_before_step()
            optimizer._on_after_step()
        if log:
            # The graph's outputs are overwritten by the next replay: log copies.
            metrics = {k: v.clone() for k, v in metrics.items()}
            metrics["iteration"] = float(self.iteration)
            self.log_dict({f"{self.log_prefix}/{k}": v for k, v in metrics.items()},
                          on_step=True, on_epoch=False)

    def _build_step_graph(self) -> WholeStepGraph:
        capture = self.whole_step == "graph"
        if capture:
            precision = str(self.trainer.precision)
            if precision.startswith("16"):
                raise UsageError(f"model.whole_step=graph cannot capture trainer.precision="
                                 f"{precision} (its gradient scaler syncs with the host); use "
                                 "bf16-mixed or 32-true")
            for optimizer in self.optimizers():
                _make_capturable(optimizer.optimizer)
        return WholeStepGraph(self._whole_step, capture=capture,
                              channels_last=self.channels_last)

    def _whole_step(self, real: torch.Tensor, real_labels: torch.Tensor
                    ) -> dict[str, torch.Tensor]:
        """One D update and one G update on ``real`` [B, 3, R, R] and ``real_labels`` [B].

        The eager step's arithmetic, written so a CUDA graph can capture it: no
        value read on the host, latents drawn on the device, the raw optimisers
        stepped, the EMA updated by ``ema_update``, and every metric computed
        (a graph cannot skip work on the steps that do not log).
        """
        d_opt, g_opt = self.optimizers()
        n = real.shape[0]
        z = torch.randn(n, self.latent_dim, device=real.device)
        fake_labels = torch.randint(self.num_classes, (n,), device=real.device)
        self.step_latents = (z, fake_labels)
        # Autocast's cast cache would hold the bf16 copy of a weight across an
        # optimiser step inside one graph; casting afresh costs a few small kernels.
        autocast = torch.autocast(
            real.device.type, dtype=torch.get_autocast_dtype(real.device.type),
            enabled=torch.is_autocast_enabled(real.device.type), cache_enabled=False)
        with autocast:
            fake = self.generator(z, fake_labels)
            d_loss, d_metrics = self._discriminator_objective(real, real_labels, fake.detach(),
                                                              fake_labels, log=True)
        d_opt.optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.optimizer.step()
        self.toggle_optimizer(g_opt)
        with autocast:
            g_loss, parts = self._generator_objective(fake, fake_labels)
        g_opt.optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.optimizer.step()
        self.untoggle_optimizer(g_opt)
        if self.generator_ema is not None:
            ema_update(self.generator_ema.module, self.generator,
                       self.generator_ema.n_averaged, self.ema_decay)
        return {**d_metrics, "g_loss": g_loss.detach(),
                **{k: v.detach() for k, v in parts.items()}}


def _make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Switch an optimiser to its CUDA-graph-safe variant, state included.

    Done after Lightning restores a checkpoint, whose param groups would
    otherwise bring back ``capturable=False`` and a step count on the CPU.
    """
    if not all("capturable" in group for group in optimizer.param_groups):
        if optimizer.state:  # stateful without a capturable variant: can't be captured
            raise UsageError(f"model.whole_step=graph needs optimisers with a capturable "
                             f"variant (Adam, AdamW, RMSprop, ...), not "
                             f"{type(optimizer).__name__}; or set model.whole_step=null")
        return
    for group in optimizer.param_groups:
        group["capturable"] = True
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            step = state.get("step")
            if isinstance(step, torch.Tensor) and step.device != param.device:
                state["step"] = step.to(param.device, torch.float32)


class SampleGridCallback(L.Callback):
    """Saves a grid of class-conditional samples every ``every_n_iterations`` and at the end.

    Rows of ``nrow`` images; each class fills ``per_class / nrow`` rows. Files go
    to ``<dirpath>/iter_<iteration>.png`` and to every logger with ``log_image``.
    """

    def __init__(self, dirpath: str | Path, every_n_iterations: int = 500, per_class: int = 16,
                 nrow: int = 8, seed: int = 0) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_iterations = every_n_iterations
        self.per_class = per_class
        self.nrow = nrow
        self.seed = seed

    def _save(self, trainer: L.Trainer, module: ACGANModule) -> Path | None:
        if not trainer.is_global_zero:
            return None
        images = class_grid(module.sampler, self.per_class, self.seed)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"iter_{module.iteration:07d}.png"
        save_image(images, path, nrow=self.nrow, padding=1)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image("pretrain/samples", [str(path)], step=module.iteration)
        return path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration % self.every_n_iterations == 0:
            self._save(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer, pl_module)
