"""Steps the eye sees: a search's step measured by how much it changes the image.

A step of one latent unit along one GANSpace direction can change the image
ten times as much as along another, and the same direction changes some
images more than others; a search that sizes its steps in latent units
shows candidates that differ plainly in one round and not at all in the
next. ``Visible`` gives a search a local metric instead: ``speeds(point,
directions)`` is the visible change per unit step along each direction at
the point (for images: a Jacobian-vector product of the generator, in mean
absolute 8-bit pixel difference, ``PixelMetric``), ``per_unit`` converts the
search's own step schedule into a visible difference, and ``floor`` is the
least visible difference between two candidates (a just-noticeable
difference). A search then steps along a direction d by
max(per_unit·s, floor/√2) / speed(d) for its scheduled step s, so the
candidates' visible difference from the centre follows the schedule down to
floor/√2, whatever the direction: the two nearest candidates (on
perpendicular axes, or in adjacent quadrants) then differ by the floor.

The searches decide what to ask, what a pick excludes and what they believe
in their own coordinates, as before: only the length of each candidate's
step changes (a change of metric). A logged proposal holds the steps it
showed, so a replay never calls the metric for a logged round.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pirtune.errors import UsageError
from pirtune.search.space import SearchSpace

Speeds = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(point [k], unit directions [m, k]) → visible change per unit step along each [m]."""

# A direction whose image barely moves would need an enormous latent step to reach the
# floor, far outside what the generator draws: no direction is stretched beyond this many
# times the step the schedule alone gives it (``Visible.stretch``).
MAX_STRETCH = 4.0
# Forward-mode AD keeps its dual level per process, not per thread: two JVPs at once (two
# web-app sessions) fail with "no level exists". One at a time (about 15 ms for two
# directions of the shipped generator).
_JVP_LOCK = threading.Lock()


@dataclass(frozen=True)
class Visible:
    """A search's visible metric (see the module docstring).

    Attributes:
        speeds: the visible change per unit step along directions at a point.
        per_unit: the visible difference of a scheduled step of 1 (so the
            schedule's first step shows what it showed in latent units at the
            start, on average over the coordinate axes: ``at``).
        floor: the least visible difference between two candidates, in the
            units of ``speeds`` (for ``PixelMetric``: /255); each differs from
            the centre by at least floor/√2.
        stretch: the most a direction's step may grow beyond the schedule's
            step to reach the visible target (the floor holds only up to it).
    """

    speeds: Speeds
    per_unit: float
    floor: float = 0.0
    stretch: float = MAX_STRETCH

    def __post_init__(self) -> None:
        if not self.per_unit > 0 or not self.floor >= 0 or not self.stretch >= 1:
            raise UsageError(f"per_unit={self.per_unit} must be positive, floor={self.floor} "
                             f">= 0 and stretch={self.stretch} >= 1")

    @classmethod
    def at(cls, speeds: Speeds, point: np.ndarray, floor: float = 0.0,
           stretch: float = MAX_STRETCH) -> Visible:
        """The metric whose ``per_unit`` is the mean speed along the coordinate axes at
        ``point`` (the start): a scheduled step shows there what it showed before."""
        point = np.asarray(point, dtype=np.float64)
        per_unit = float(np.mean(speeds(point, np.eye(len(point)))))
        return cls(speeds, per_unit, floor, stretch)

    def steps(self, point: np.ndarray, directions: np.ndarray, step: float) -> np.ndarray:
        """The step [m] along each unit direction [m, k] at ``point`` whose visible change is
        ``visible_step(step)``, each at most ``stretch`` times the schedule's."""
        target = self.visible_step(step)
        speeds = np.asarray(self.speeds(point, directions), dtype=np.float64)
        # A direction that does not move the image at all gets the longest step allowed.
        with np.errstate(divide="ignore"):
            wanted = np.where(speeds > 0, target / speeds, np.inf)
        return np.minimum(wanted, self.stretch * target / self.per_unit)

    def visible_step(self, step: float) -> float:
        """The visible difference from the centre of a scheduled ``step``:
        max(per_unit·step, floor/√2)."""
        return max(self.per_unit * step, self.floor / np.sqrt(2))


class PixelMetric:
    """The visible speed of search directions in a generator's images (a ``Speeds``).

    At a point y of ``space`` and a unit direction d, the image changes at
    the rate J·d (J the Jacobian of the [0, 1] image with respect to y), so a
    small step t along d moves the image by t·mean|J·d| in mean absolute
    pixel value; the speed is 255·mean|J·d|, the /255 figure per unit step.
    One forward-mode Jacobian-vector product (``torch.func.jvp``) per
    direction, batched; clipping to [0, 1] is part of the image (a clipped
    pixel does not move).

    Args:
        generator: any ``ImageGenerator`` (evaluated in eval mode, its dtype).
        space: the search space (coordinates → latents).
        image_class: the class every image of the session is drawn in.
    """

    def __init__(self, generator: nn.Module, space: SearchSpace, image_class: int) -> None:
        self.generator = generator
        self.space = space
        self.image_class = int(image_class)
        parameter = next(generator.parameters())
        self.dtype, self.device = parameter.dtype, parameter.device

    def _latents(self, points: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.space.to_latent(points), dtype=self.dtype, device=self.device)

    def images(self, points: np.ndarray) -> torch.Tensor:
        """Images [m, 3, R, R] in [0, 1] of points [m, k]."""
        z = self._latents(np.atleast_2d(points))
        labels = torch.full((len(z),), self.image_class, device=self.device)
        was_training = self.generator.training
        self.generator.eval()
        with torch.no_grad():
            images = self.generator.images(z, labels).clamp(0, 1)
        self.generator.train(was_training)
        return images

    def __call__(self, point: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """255·mean|J·d| [m] for each direction d [m, k] at ``point`` [k]."""
        directions = np.atleast_2d(directions)
        z = self._latents(np.broadcast_to(point, directions.shape))             # [m, n]
        tangents = torch.as_tensor(directions @ self.space.basis, dtype=self.dtype,
                                   device=self.device)                           # [m, n]
        labels = torch.full((len(z),), self.image_class, device=self.device)
        was_training = self.generator.training
        self.generator.eval()
        with _JVP_LOCK, torch.no_grad():
            _, change = torch.func.jvp(
                lambda latents: self.generator.images(latents, labels).clamp(0, 1),
                (z,), (tangents,))                                               # [m, 3, R, R]
        self.generator.train(was_training)
        return 255 * change.abs().mean(dim=(1, 2, 3)).double().cpu().numpy()


def pixel_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of 8-bit images, /255: images [..., 3, R, R] in [0, 1].

    The images are rounded to 8 bits first, as the page shows them.
    """
    def to_8bit(x: torch.Tensor) -> torch.Tensor:
        return (x * 255 + 0.5).clamp(0, 255).floor()
    return (to_8bit(a) - to_8bit(b)).abs().mean(dim=(-3, -2, -1))
