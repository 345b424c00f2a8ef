"""One training step as one CUDA graph: static inputs, warm-up, capture, replay.

``WholeStepGraph`` wraps a step function of two tensors (the batch) whose
every other input lives in tensors that stay put between calls (parameters,
buffers, optimiser state). It copies each batch into static buffers and calls
the function on them: eagerly for the first ``warmup`` calls (on a side
stream, so that cuBLAS/cuDNN workspaces and lazily created optimiser state
exist before capture), then captures one call as a CUDA graph and, from then
on, only replays it. With ``capture=False`` it stays eager with the same
static buffers, on any device: the graph's code path without the graph, which
is what the CPU tests compare with the module's ordinary step.

Randomness inside the graph (latents, dropout, augmentation) comes from the
default CUDA generator, which ``torch.cuda.graph`` registers so that every
replay draws fresh numbers (philox offsets advance per replay).

What a captured function must not do (see the PyTorch CUDA-graph notes):
read a tensor's value on the host (``.item()``, ``if tensor``), copy from a
CPU tensor, allocate outside the graph's pool or change shapes. The ACGAN's
step is written to that rule; R1's double backward is refused rather than
run untested (``ACGANModule``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import torch
from torch import nn

log = logging.getLogger(__name__)

StepFunction = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


class WholeStepGraph:
    """Runs ``step(images, labels)`` from static buffers, as one CUDA graph once warm.

    Args:
        step: the step; returns a dict of metric tensors (the graph's outputs,
            overwritten by the next replay: clone what you keep).
        capture: capture and replay a CUDA graph (needs CUDA tensors); ``False``
            runs the step eagerly from the same static buffers.
        warmup: eager calls before the capture.
        channels_last: keep the static image buffer in channels-last layout.
    """

    def __init__(self, step: StepFunction, capture: bool, warmup: int = 3,
                 channels_last: bool = False) -> None:
        self.step = step
        self.capture = capture
        self.warmup = warmup
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.calls = 0
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: dict[str, torch.Tensor] = {}

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step on ``images`` [B, 3, R, R] and ``labels`` [B]; its metric tensors."""
        if self.static is None:
            self.static = (torch.empty_like(images, memory_format=self.memory_format),
                           torch.empty_like(labels))
        if (images.shape, labels.shape) != tuple(t.shape for t in self.static):
            # A short last batch: run it eagerly; the graph keeps its own memory.
            log.info("whole step: batch of shape %s is not the captured %s; running it eagerly",
                     tuple(images.shape), tuple(self.static[0].shape))
            return self._eager(images, labels)
        self.static[0].copy_(images)
        self.static[1].copy_(labels)
        if not self.capture:
            return self.step(*self.static)
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            return self._eager(*self.static)
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            # Thread-local: a data-loader thread touching CUDA must not break the capture.
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.outputs = self.step(*self.static)
        # Capturing records the step without running it, so the first replay is this batch's.
        self.graph.replay()
        return self.outputs

    def _eager(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.capture:
            return self.step(images, labels)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self.step(images, labels)
        torch.cuda.current_stream().wait_stream(side)
        return out


@torch.no_grad()
def ema_update(average: nn.Module, model: nn.Module, n_averaged: torch.Tensor,
               decay: float) -> None:
    """``AveragedModel(use_buffers=True)`` with an EMA, without reading a value on the host.

    ``AveragedModel.update_parameters`` asks ``if n_averaged == 0`` on the host,
    which a CUDA graph cannot; here the first update is a lerp with weight 1
    (an exact copy) chosen on the device. Same result as
    ``get_ema_multi_avg_fn(decay)``: floating tensors lerp by 1 − decay, the
    integer ones (batch norm's counter) take ``decay·ema + (1 − decay)·new``.

    Args:
        average: the averaged copy (``AveragedModel.module``).
        model: the network being trained.
        n_averaged: the ``AveragedModel``'s update counter [] (incremented here).
        decay: the EMA decay in (0, 1).
    """
    first = n_averaged == 0
    weight = torch.where(first, 1.0, 1.0 - decay)  # [] on the device
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]] = zip(
        [*average.parameters(), *average.buffers()], [*model.parameters(), *model.buffers()],
        strict=True)
    for ema, new in pairs:
        if ema.is_floating_point():
            ema.lerp_(new, weight.to(ema.dtype))
        else:
            ema.copy_(torch.where(first, new, ema * decay + new * (1 - decay)))
    n_averaged.add_(1)
