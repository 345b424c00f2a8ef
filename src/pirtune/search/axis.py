"""The paper's four-choice axis search, and the random four-choice baseline.

*Personalized generative model via active learning*, section 4, with four
images instead of two: from the current point x, show x ± s·u and x ± s·v on
two perpendicular axes; the person picks one; the half-space behind the losing
side of the chosen axis (through the old x, facing away from the pick) is
excluded from every later candidate; the pick becomes x, and the next axes are
perpendicular to the chosen one. Where the paper is vague, ``AxisSearch``
reads it so:

* **Axes.** u and v are drawn at random (seeded), orthonormalised, and made
  perpendicular to the previously chosen axis ("a new line, perpendicular to
  the line the image is staying on").
* **Feasibility.** The axes are also kept perpendicular to the boundaries
  that lie within one step of x (the nearest k/2 of them), so candidates run
  along those boundaries instead of into them; where a full step would still
  enter an excluded half-space, both candidates on that axis move back to
  half the nearer one's distance to the boundary, so no candidate ever lies
  in one, x stays strictly inside, and the two stay equally far from x (with
  unequal steps "+u beats −u" would only place the target beyond their
  midpoint, and the cut through x could exclude it). Without the first rule x
  wedges itself into a corner of the feasible region and the steps die there.
* **Step size.** The paper shrinks the step only when no candidate is
  feasible; taken literally that stalls (the step stays large and the picks
  circle the target), and a fixed decay schedule stalls the other way (the
  step dies before a far target is reached). Here the step follows the
  search's own moves, never the true distance, by cumulative step-size
  adaptation (the path-length control of CMA-ES): an evolution path
  p ← (1 − c)·p + √(c(2 − c))·m sums the unit directions m of the picks; picks
  that keep going one way (a far target) make |p|² exceed 1, its value for
  unrelated directions, and the step grows by exp(c·(|p|² − 1)/2); picks that
  double back (overshooting a near target) make it shrink. c = ``adapt`` /
  (k + 2), and the step never exceeds twice the first, nor grows after a pick
  that a boundary cut short. The first step is ``1.5·prior_sd``: the best step when the target
  is as far from the start as two random latents are (√(2k)·prior_sd), since
  the best of four random directions points about 1.1/√k of the way to it.
* **"These look the same."** Four candidates that look alike are too close
  to tell apart, so a "same" answer (``pirtune.search.feedback``) grows the
  step by ``SAME_GROWTH`` (up to the cap) and asks again: the point stays,
  nothing new is excluded (no side lost), the evolution path is untouched
  (the search did not move), and the next round's axes are fresh ones (they
  come from the round number). Shrinking instead would make the next
  candidates even more alike. Where a boundary cut the candidates short, the
  nearest cut is dropped too: it hems the search in below what the person can
  see, and it may come from a pick among candidates that looked alike (a
  person with a just-noticeable difference picks at random among those), so
  the target may lie behind it. A person who cannot see a difference between
  candidates a capped step apart is where no step the search may take shows
  one, and finishes.

``RandomSearch`` is the baseline the paper's idea must beat: the same four
candidates and step rule around the current point, on fresh random axes,
with no memory (no excluded half-spaces, no perpendicularity).
"""

from __future__ import annotations

import numpy as np

from pirtune.errors import UsageError
from pirtune.search.base import FourChoiceSearch, Proposal, axis_candidates
from pirtune.search.visible import Visible

FEASIBLE_FRACTION = 0.5  # a shortened candidate goes half-way to the nearest boundary
AXIS_DRAWS = 8  # random axis pairs drawn per round, for when the first is wedged
WEDGED = 0.01  # a pair whose shorter step is below this share of the step is wedged
SAME_GROWTH = 2.0  # "these look the same" multiplies the step by this (up to max_step)


def avoided_span(dim: int, avoid: list[np.ndarray]) -> np.ndarray:
    """An orthonormal basis [dim, m] of the span of ``avoid`` (m may be 0)."""
    if avoid:
        q, r = np.linalg.qr(np.stack(avoid).T)              # [dim, m]: the avoided span
        q = q[:, np.abs(np.diag(r)) > 1e-9]
    else:
        q = np.zeros((dim, 0))
    if dim - q.shape[1] < 2:
        raise UsageError(f"no two axes are left in {dim} dimensions after avoiding "
                         f"{q.shape[1]} directions")
    return q


def axis_pair(rng: np.random.Generator, span: np.ndarray) -> np.ndarray:
    """Two orthonormal random axes [2, dim], perpendicular to ``span`` [dim, m]."""
    axes: list[np.ndarray] = []
    while len(axes) < 2:
        w = rng.standard_normal(span.shape[0])
        w -= span @ (span.T @ w)
        for axis in axes:
            w -= (w @ axis) * axis
        norm = np.linalg.norm(w)
        if norm > 1e-9:  # a draw inside the avoided span (measure zero) is drawn again
            axes.append(w / norm)
    return np.stack(axes)


class AxisSearch(FourChoiceSearch):
    """The paper's search: excluded half-spaces, perpendicular axes, an adaptive step.

    Args:
        start: the start point [k] in the search space's coordinates.
        seed: seeds the axes; round r's axes come from (seed, r) alone, so the
            same seed and the same picks give the same run on the same machine
            (another BLAS kernel may round differently, and the difference
            grows over the rounds), and a run replayed from logged proposals is
            the same run anywhere.
        prior_sd: the scale of the space (the latent prior's SD: 1).
        adapt: the speed of the step-size adaptation (c·(k + 2)).
        memory: ``False`` turns it into ``RandomSearch``.
        min_step: below this step on both axes the proposal is ``stalled``.
        max_cuts: the most excluded half-spaces kept (default 4·k + 16); beyond
            it the ones farthest from the current point are dropped, which keeps
            the cost of a round bounded (a dropped cut can bind again only after
            the point has travelled its whole slack).
        radius: the satisfaction radius (see ``FourChoiceSearch``).
        visible: a visible metric (``pirtune.search.visible``): each axis then
            steps so far that its candidates differ from the current point by
            max(per_unit·step, floor) in what the eye sees (before a boundary
            shortens them); the step adapts as before, in coordinates.
    """

    def __init__(self, start: np.ndarray, seed: int = 0, prior_sd: float = 1.0,
                 adapt: float = 2.0, memory: bool = True, min_step: float = 1e-6,
                 max_cuts: int | None = None, radius: float | None = None,
                 visible: Visible | None = None) -> None:
        super().__init__(start, radius)
        if not prior_sd > 0 or not 0 < adapt < self.dim + 2 or not min_step >= 0:
            raise UsageError(f"prior_sd={prior_sd} must be positive, adapt={adapt} in "
                             f"(0, {self.dim + 2}) and min_step={min_step} >= 0")
        self.seed = seed
        self.step = 1.1 * np.sqrt(2) * prior_sd
        self.max_step = 2 * self.step
        self.min_step = min_step
        self.visible = visible
        self.max_cuts = 4 * self.dim + 16 if max_cuts is None else max_cuts
        if self.max_cuts < 1:
            raise UsageError(f"max_cuts={max_cuts} must be at least 1")
        # The chosen axis and these must leave two free dimensions for u and v.
        self.avoid_nearest = min(self.dim // 2, self.dim - 3)
        if memory and self.dim < 3:
            raise UsageError(f"AxisSearch needs at least 3 dimensions (two axes perpendicular "
                             f"to the chosen one), not {self.dim}; use a larger space")
        self.rate = adapt / (self.dim + 2)
        self.path = np.zeros(self.dim)  # the evolution path of the picks' directions
        self.memory = memory
        # Excluded half-spaces {y : normal·y < offset}; feasible means normals @ y >= offsets.
        self.normals = np.zeros((0, self.dim))
        self.offsets = np.zeros(0)
        self.chosen_axis: np.ndarray | None = None

    def uncertainty(self) -> float:
        """The search's own estimate of its distance to the target: step·√k/10.

        Calibrated on exact people (n = 8, 16, 64): when the point first came
        within R, the step was 12·R/√k at the median (9–26·R/√k over the runs),
        so the search calls itself done a little after it typically arrives.
        """
        return self.step * np.sqrt(self.dim) / 10

    def _max_steps(self, directions: np.ndarray) -> np.ndarray:
        """How far from the current point each unit direction [4, k] stays feasible."""
        # The current point is inside; rounding can put it a hair outside a boundary.
        slack = np.maximum(self.normals @ self.current - self.offsets, 0.0)   # [m]
        rate = directions @ self.normals.T                                    # [4, m]
        approaching = rate < -1e-12
        limits = np.full(rate.shape, np.inf)
        limits[approaching] = (slack[None, :] / -np.where(approaching, rate, -1.0))[approaching]
        return limits.min(axis=1, initial=np.inf)

    def _feasible_steps(self, axes: np.ndarray) -> np.ndarray:
        """The longest step each axis [a, k] may take both ways: half-way to a boundary [a]."""
        directions = np.stack([axes, -axes], axis=1)                       # [a, ±, k]
        limits = self._max_steps(directions.reshape(-1, self.dim)).reshape(-1, 2).min(axis=1)
        return FEASIBLE_FRACTION * limits

    def _axis_steps(self, pairs: np.ndarray) -> np.ndarray:
        """The step each axis of each pair [p, 2, k] can take, both ways [p, 2]."""
        axes = pairs.reshape(-1, self.dim)
        wanted = (self.step if self.visible is None
                  else self.visible.steps(self.current, axes, self.step))
        return np.minimum(wanted, self._feasible_steps(axes)).reshape(-1, 2)

    def _active_normals(self) -> list[np.ndarray]:
        """Normals of the boundaries within one step of the current point (nearest first)."""
        slack = self.normals @ self.current - self.offsets
        near = np.flatnonzero(slack < self.step)
        near = near[np.argsort(slack[near], kind="stable")][: self.avoid_nearest]
        return [self.normals[i] for i in near]

    def _propose(self) -> Proposal:
        round_ = self.rounds + 1
        avoid = [self.chosen_axis] if self.memory and self.chosen_axis is not None else []
        rng = np.random.default_rng([self.seed, round_])
        span = avoided_span(self.dim, [*avoid, *self._active_normals()])
        pairs = axis_pair(rng, span)[None]                               # [1, 2, k]
        # Both candidates on an axis are equally far from the centre (the paper's "equal
        # length apart"), so "+u beats −u" means the target lies beyond the centre along
        # u, and the cut through the centre is right: a boundary shortens both.
        # The first pair, unless a boundary cuts its shorter step below WEDGED·step: then
        # the pair whose shorter step is longest among AXIS_DRAWS (choosing among pairs
        # always would steer the axes away from the boundaries, which surround the target,
        # and slow the search).
        all_steps = self._axis_steps(pairs)
        if all_steps[0].min() < WEDGED * self.step:
            more = np.stack([axis_pair(rng, span) for _ in range(AXIS_DRAWS - 1)])
            pairs = np.concatenate([pairs, more])
            all_steps = np.concatenate([all_steps, self._axis_steps(more)])
        best = int(np.argmax(all_steps.min(axis=1)))
        (u, v), (step_u, step_v) = pairs[best], all_steps[best]
        steps = np.array([step_u, step_u, step_v, step_v])
        return Proposal(self.current, axis_candidates(self.current, u, v, steps),
                        np.stack([u, v]), steps, round_,
                        stalled=bool(steps.max() < self.min_step))

    def _choose(self, proposal: Proposal, index: int) -> None:
        cut_short = self._cut_short(proposal, index)
        axis = proposal.axes[index // 2] * (1 if index % 2 == 0 else -1)  # towards the pick
        if self.memory:
            # Exclude the losing side of the chosen axis: {y : axis·(y − old x) < 0}.
            self.normals = np.vstack([self.normals, axis])
            self.offsets = np.append(self.offsets, axis @ proposal.centre)
            self.chosen_axis = axis
        self.current = proposal.points[index].copy()
        if len(self.offsets) > self.max_cuts:
            keep = np.argsort(self.normals @ self.current - self.offsets,
                              kind="stable")[: self.max_cuts]
            keep.sort()
            self.normals, self.offsets = self.normals[keep], self.offsets[keep]
        c = self.rate
        self.path = (1 - c) * self.path + np.sqrt(c * (2 - c)) * axis
        factor = np.exp(c * (self.path @ self.path - 1) / 2)
        if cut_short:
            factor = min(factor, 1.0)  # a pick cut short by a boundary is no reason to grow
        self.step = min(self.step * factor, self.max_step)

    def _same(self, proposal: Proposal) -> None:
        """The four looked alike: ask again with a step ``SAME_GROWTH`` times longer, and
        without the nearest cut if a boundary cut the candidates short."""
        if self.memory and len(self.offsets) and any(
                self._cut_short(proposal, index) for index in (0, 2)):
            nearest = int(np.argmin(self.normals @ self.current - self.offsets))
            self.normals = np.delete(self.normals, nearest, axis=0)
            self.offsets = np.delete(self.offsets, nearest)
        self.step = min(self.step * SAME_GROWTH, self.max_step)

    def _cut_short(self, proposal: Proposal, index: int) -> bool:
        """Whether a boundary shortened the picked axis's step (before the pick's cut).

        With a visible metric the wanted step depends on the metric, so it is read
        off the geometry instead: the step is the feasible one. A replayed
        proposal so never calls the metric.
        """
        if self.visible is None:
            return bool(proposal.steps[index] < self.step)
        feasible = self._feasible_steps(proposal.axes[index // 2][None])[0]
        return bool(proposal.steps[index] >= feasible * (1 - 1e-9))


class RandomSearch(AxisSearch):
    """Pick-best among four random directions around the current point (the baseline)."""

    def __init__(self, start: np.ndarray, seed: int = 0, prior_sd: float = 1.0,
                 adapt: float = 2.0, min_step: float = 1e-6, radius: float | None = None,
                 visible: Visible | None = None) -> None:
        super().__init__(start, seed, prior_sd, adapt, memory=False, min_step=min_step,
                         radius=radius, visible=visible)
