"""A four-choice search that learns from every answer: Bayesian bisection per axis.

``PreferenceSearch`` keeps a posterior over the person's target t and asks
the question that halves it. A pick among four is three pairwise preferences
(the chosen image ≻ each other one). For a person who picks the image nearest
their target, with the candidates c ± s·u, c ± s·v where u = (eᵢ + eⱼ)/√2 and
v = (eⱼ − eᵢ)/√2 lie on the diagonals of two coordinate axes i, j, those
preferences say exactly which quadrant of the (i, j) plane t lies in:
"+u ≻ +v" ⟺ tᵢ > cᵢ and "+u ≻ −v" ⟺ tⱼ > cⱼ. So each answer is two
half-space cuts through c, and it is worth the full log₂4 = 2 bits when c is
the posterior median in both coordinates.

The posterior is kept factorised, one marginal per coordinate on a fine grid
(prior: N(start, prior_sd²) per coordinate), which makes every update exact
for a noiseless person and cheap in any dimension. Each round:

1. the two coordinates of largest remaining uncertainty (the 5–95 % range
   of their marginals) are the axes;
2. the centre is the current best estimate ``current`` (the vector of posterior
   medians), with its two coordinates moved to the nearest cut between grid
   points that halves their marginals;
3. the step is twice the posterior's expected distance to the target (large
   steps make the candidates differ the most, which matters to a noisy person);
4. the answer updates the two marginals under a noise model, with the other
   coordinate integrated out exactly (assumed-density filtering onto the
   factorised family), so a wrong pick costs a little mass, never the target.

**How noisy is the person?** The search learns it from the picks. It keeps one
factorised posterior per hypothesis in ``LEARNED_NOISE`` (a ``Noise``: a
share of random picks, plus a blur of the judgement around the cut, either
absolute — a Thurstone person who adds N(0, σ²) to each distance — or
relative to the remaining distance) and weighs the hypotheses by how well
each predicted every pick: a contradiction that a sharp hypothesis cannot
explain moves the weight to the noisier ones for good, while a person who
never contradicts themselves keeps most of it on the sharp ones. The search
asks its questions from the weighted mixture. For a Thurstone person, the
pick "+u over −v" compares distances that differ by about √2·s·δⱼ/d̄ (s the
step, δ the target's offset from the centre, d̄ the candidates' typical
distance, √5/2·s at ``step_scale`` 2), so noise σ on the distances blurs
coordinate j over a width of σ·d̄/s ≈ 1.12σ: hence ``WIDTH_PER_SD``.

A fixed ε (``error_rate``; the earlier default was 0.15) is one hypothesis:
the nearest candidate with probability 1 − ε, each other one ε/3. It holds
for nearly exact people but loses most targets in 32 dimensions for people
whose noise is larger or grows with the distance; learning keeps exact people
within a round or two of the fixed ε's speed (``scripts/bench/search.py``). A
floor on each marginal's mass keeps a wrong pick undoable, and the 5–95 %
range (not the interquartile range) as the measure of uncertainty keeps a
coordinate that a wrong pick made confidently wrong in the running to be
asked again.

**"These look the same."** A person who cannot tell the four candidates
apart (``pirtune.search.feedback``) sees their utilities −d (the distances
to the target) differ by less than a just-noticeable difference. The spread
of the four distances is about S(t) = aᵢ·|tᵢ − cᵢ| + aⱼ·|tⱼ − cⱼ| with
aₖ = 2·mₖ/d̄ (mₖ the candidates' move along coordinate k, d̄ = √(E² + mᵢ² +
mⱼ²) their typical distance to the target, E the expected distance of the
centre), since opposite quadrants' squared distances differ by
4·(mᵢ·δᵢ + mⱼ·δⱼ). The likelihood of "same" falls with that spread,

    P(same | t) = λ + (1 − λ)·exp(−S(t) / jnd),

with jnd in the search's coordinates (default: the satisfaction radius R:
what a person cannot tell apart, they need not) and a lapse λ =
``SAME_LAPSE`` of "same" answers given whatever the candidates show. The
exponential of a sum factorises, so the update stays exact per coordinate
(the other one integrated out, as for picks): "same" pulls both asked
marginals towards their cut, and the next round asks other coordinates.
A pick's likelihood is the one above, conditioned on the answer being a pick
(it leaves out the little a pick says by not being "same").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from pirtune.errors import UsageError
from pirtune.search.base import FourChoiceSearch, Proposal, axis_candidates
from pirtune.search.visible import Visible

GRID = 2048      # grid points per coordinate
FLOOR = 1e-12    # no grid point's mass falls below FLOOR × the largest: a wrong pick is undone
SPREAD = (0.05, 0.95)  # the quantile range that measures a coordinate's uncertainty
SPAN = 6.0       # the grid covers start ± SPAN·prior_sd
SPREAD_PER_SD = 3.290  # a normal's 5–95 % range in standard deviations
LATENT_PRIOR_SD = np.sqrt(2)  # a target and a start drawn from N(0, I) differ by N(0, 2I)

# The quadrant each pick reveals: the signs of (tᵢ − cᵢ, tⱼ − cⱼ), picks in +u, −u, +v, −v order.
QUADRANTS = ((1, 1), (-1, -1), (-1, 1), (1, -1))


@dataclass(frozen=True)
class Noise:
    """One hypothesis about how a person errs.

    The person's judgement of a coordinate's side is blurred over a width
    w = 1.12·(``absolute``·R + ``relative``·E) around the cut (R the
    satisfaction radius, E the search's expected distance to the target; 1.12
    converts a Thurstone SD on distances into a width per coordinate at the
    search's step, see the module docstring), and a share ``lapse`` of the
    picks are random.
    """

    lapse: float
    absolute: float = 0.0
    relative: float = 0.0


# The hypotheses a learning search weighs, and their prior weights: the exact person is the
# likeliest a priori, so a person who never contradicts themselves pays almost nothing.
LEARNED_NOISE = (
    (Noise(0.02), 0.3),
    (Noise(0.02, absolute=0.1), 0.1), (Noise(0.02, absolute=0.3), 0.1),
    (Noise(0.02, absolute=0.7), 0.1), (Noise(0.02, absolute=1.5), 0.1),
    (Noise(0.02, relative=0.1), 0.1), (Noise(0.02, relative=0.25), 0.1),
    (Noise(0.02, relative=0.5), 0.05), (Noise(0.25), 0.05),
)
REMIX = 0.02  # the change in any weight that re-mixes every coordinate
SLOW_BITS = 0.2  # an answer expected to give less than this is no longer progress
WITHIN_DRAWS = 4000  # posterior draws that estimate the probability of being within R
DONE_PROBABILITY = 0.99  # done: the target within R with this posterior probability
DONE_GATE = 1.5  # ... which is only estimated once the expected distance is below DONE_GATE·R
WIDTH_PER_SD = 1.12  # √(1 + step_scale²)/step_scale at step_scale 2 (module docstring)
SAME_LAPSE = 0.02  # the share of "same" answers a person gives whatever the candidates show


def _entropy(p: np.ndarray | float) -> np.ndarray:
    """The binary entropy of p, in bits (0 at 0 and 1)."""
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


class PreferenceSearch(FourChoiceSearch):
    """Bayesian four-choice search over a factorised posterior (see the module docstring).

    Args:
        start: the start point [k]; the prior's centre.
        prior_sd: prior SD of the target around the start: one for every
            coordinate (√2 when targets are independent draws from the latent
            prior N(0, I)), or one per coordinate [k] (a prior learnt from
            earlier people, ``pirtune.webapp.prior``).
        error_rate: ``None`` (default) learns the person's noise from their
            picks (``LEARNED_NOISE``); a number ε fixes it instead: the person
            picks the nearest candidate with probability 1 − ε.
        step_scale: the step in units of the expected distance to the target.
        min_step: below this step (of the schedule, in coordinates) the
            proposal is ``stalled``.
        radius: the satisfaction radius (see ``FourChoiceSearch``).
        visible: a visible metric (``pirtune.search.visible``): each asked
            coordinate then moves so far that the candidates differ from the
            centre by max(per_unit·step, floor) in what the eye sees.
        pick_centre: the candidates vary the last pick (``picked``) in the two
            asked coordinates, so the image a person just picked is the one
            they see varied, instead of the posterior medians (``current``).
            The quadrant a pick reveals is the same, but every candidate is
            as far from the target as the pick is in the other coordinates:
            with large steps a noisy person's picks tell much less
            (``scripts/bench/search.py``).
        jnd: the spread of the four candidates' distances to the target below
            which they look the same to the person, in the search's
            coordinates (default: ``radius``); it sets the likelihood of a
            "same" answer (module docstring).
    """

    def __init__(self, start: np.ndarray, prior_sd: float | np.ndarray = LATENT_PRIOR_SD,
                 error_rate: float | None = None, step_scale: float = 2.0,
                 min_step: float = 1e-6, radius: float | None = None,
                 visible: Visible | None = None, pick_centre: bool = False,
                 jnd: float | None = None) -> None:
        super().__init__(start, radius)
        self.jnd = self.radius if jnd is None else float(jnd)
        if not self.jnd > 0:
            raise UsageError(f"jnd={jnd} must be positive (or None: the radius)")
        prior_sd = np.broadcast_to(np.asarray(prior_sd, dtype=np.float64), (self.dim,))
        if not np.all(prior_sd > 0) or not step_scale > 0 or not min_step >= 0:
            raise UsageError(f"prior_sd={prior_sd} and step_scale={step_scale} must be positive "
                             f"and min_step={min_step} >= 0")
        if error_rate is not None and not 0 <= error_rate < 0.75:
            raise UsageError(f"error_rate={error_rate} must lie in [0, 0.75) (at 0.75 a pick "
                             "says nothing), or be None to learn it")
        if error_rate is None:
            self.noises = [noise for noise, _ in LEARNED_NOISE]
            weights = np.array([weight for _, weight in LEARNED_NOISE])
        else:  # right quadrant 1 − ε, each wrong one ε/3: a lapse of 4ε/3
            self.noises, weights = [Noise(4 * error_rate / 3)], np.ones(1)
        self.weights = weights / weights.sum()                           # [M]
        self.step_scale = step_scale
        self.min_step = min_step
        self.visible = visible
        self.pick_centre = pick_centre
        offsets = prior_sd[:, None] * np.linspace(-SPAN, SPAN, GRID)[None, :]   # [k, G]
        self.grid = self.current[:, None] + offsets
        prior = np.exp(-0.5 * (offsets / prior_sd[:, None]) ** 2)
        # One factorised posterior per noise hypothesis [M, k, G]; the search uses their mixture.
        prior = prior / prior.sum(axis=1, keepdims=True)
        self.masses = np.tile(prior, (len(self.noises), 1, 1))
        self._mix(self.weights)
        self.last_asked = np.full(self.dim, -1)                          # round, per coordinate

    @property
    def noise(self) -> dict[Noise, float]:
        """The posterior weight of each noise hypothesis: what the search has learnt."""
        return dict(zip(self.noises, self.weights.tolist(), strict=True))

    def _mix(self, weights: np.ndarray, rows: list[int] | None = None) -> None:
        """The mixture of the hypotheses' posteriors under ``weights`` (``mass`` [k, G] and its
        cumulative sums ``cdf``), in every coordinate or only in ``rows``."""
        if rows is None:
            self.mixed_with = weights.copy()
            self.mass = np.tensordot(weights, self.masses, axes=1)
            self.cdf = np.cumsum(self.mass, axis=1)
        else:
            self.mass[rows] = np.tensordot(weights, self.masses[:, rows], axes=1)
            self.cdf[rows] = np.cumsum(self.mass[rows], axis=1)

    def quantile(self, q: float) -> np.ndarray:
        """The q-quantile of every coordinate's marginal [k] (on the grid)."""
        index = (self.cdf < q).sum(axis=1)
        return self.grid[np.arange(self.dim), np.minimum(index, GRID - 1)]

    def _cut(self, k: int) -> float:
        """The cut through coordinate k: the midpoint between two grid points that best halves it.

        Cutting between grid points, never on one, splits the marginal even when
        it has narrowed to a single grid point, so every answer moves mass.
        """
        cdf = self.cdf[k]
        m = min(int(np.searchsorted(cdf, 0.5)), GRID - 2)   # first point with cdf >= 1/2
        below_with_m = cdf[m]                                # cut just above point m
        below_without_m = cdf[m - 1] if m > 0 else 0.0       # cut just below it
        if abs(below_with_m - 0.5) <= abs(below_without_m - 0.5) or m == 0:
            return float((self.grid[k, m] + self.grid[k, m + 1]) / 2)
        return float((self.grid[k, m - 1] + self.grid[k, m]) / 2)

    def spread(self) -> np.ndarray:
        """Each coordinate's 5–95 % range [k]: its remaining uncertainty.

        Wider than the interquartile range, so a coordinate that a wrong pick
        made confidently wrong keeps some tail, and is asked about again. It is
        never below one grid step (the grid's resolution), so the candidates
        always differ and the search never stalls: it is ``done`` instead.
        """
        spacing = self.grid[:, 1] - self.grid[:, 0]
        return np.maximum(self.quantile(SPREAD[1]) - self.quantile(SPREAD[0]), spacing)

    def uncertainty(self) -> float:
        """The expected distance to the target: √Σ (spreadᵢ / 3.29)²."""
        return float(np.sqrt(np.sum((self.spread() / SPREAD_PER_SD) ** 2)))

    @property
    def done(self) -> bool:
        """The search is stalled, or the target lies within ``radius`` of ``current`` with
        posterior probability ``DONE_PROBABILITY`` or more.

        Calling itself done when its expected distance fell below R (the rule before)
        left noisy people farther than R at first ``done`` in most runs (σ = 0.5·R,
        n = 32: 62 %): the posterior's own spread understates a noisy person's error,
        so a high probability is asked (``scripts/bench/search.py`` measures it).
        """
        if self.stalled:
            return True
        # Cheap first: with an expected distance above 1.5·R the probability is far below.
        return (self.uncertainty() <= DONE_GATE * self.radius
                and self.within() >= DONE_PROBABILITY)

    def within(self, radius: float | None = None) -> float:
        """The posterior probability that the target lies within ``radius`` (default: the
        satisfaction radius) of ``current``.

        Estimated from ``WITHIN_DRAWS`` draws of the factorised posterior (the same
        uniform numbers every call, so it is a deterministic function of the
        posterior): a sum of per-coordinate squares whose tails (the mass a wrong
        pick left behind) no moment approximation follows.
        """
        radius = self.radius if radius is None else radius
        uniforms = np.random.default_rng(0).random((WITHIN_DRAWS, self.dim))   # [S, k]
        squares = np.zeros(WITHIN_DRAWS)
        for k in range(self.dim):
            index = np.minimum(np.searchsorted(self.cdf[k], uniforms[:, k] * self.cdf[k, -1]),
                               GRID - 1)
            squares += (self.grid[k, index] - self.current[k]) ** 2
        return float(np.mean(squares <= radius ** 2))

    def _propose(self) -> Proposal:
        spread = self.spread()
        # Ties (coordinates narrowed to one grid step) go to the one asked least recently.
        i, j = np.lexsort((self.last_asked, -spread))[:2]
        centre = (self.picked if self.pick_centre else self.current).copy()
        centre[[i, j]] = [self._cut(i), self._cut(j)]
        step = self.step_scale * self.uncertainty()
        # How far each asked coordinate moves: step/√2 each (the candidates on the diagonals),
        # or in a visible metric as far as makes each move show step/√2 of visible change.
        basis = np.eye(self.dim)[[i, j]]
        moves = (np.full(2, step) if self.visible is None
                 else self.visible.steps(centre, basis, step)) / np.sqrt(2)     # [2]
        u, v = moves @ basis, (moves * [-1, 1]) @ basis    # ±u, ±v: the four quadrants
        length = float(np.linalg.norm(moves))
        steps = np.full(4, length)
        return Proposal(centre, axis_candidates(centre, u / length, v / length, steps),
                        np.stack([u, v]) / length, steps, self.rounds + 1,
                        stalled=bool(step < self.min_step))

    def _width(self, noise: Noise, expected_distance: float) -> float:
        """The blur of a person's judgement of a coordinate's side under ``noise``."""
        return WIDTH_PER_SD * (noise.absolute * self.radius + noise.relative * expected_distance)

    def information(self) -> float:
        """The bits the open proposal's answer is expected to give about the target.

        Per asked coordinate, the mutual information between the side the person
        reports and the coordinate (1 bit for an exact person at the median, less
        for a blurred or lapsing one), under each noise hypothesis, weighed by
        the hypotheses' weights; the two coordinates' bits add up. An exact
        person's answer is worth 2 bits; once the blur of a person's judgement
        is wider than what is left to find, an answer is worth little.
        """
        proposal = self.propose()
        v = proposal.axes[1]
        expected_distance = self.uncertainty()
        bits = 0.0
        for weight, noise, masses in zip(self.weights, self.noises, self.masses, strict=True):
            width = self._width(noise, expected_distance)
            for k in (int(np.argmin(v)), int(np.argmax(v))):
                offset = self.grid[k] - proposal.centre[k]
                right = ndtr(offset / width) if width > 0 else (offset > 0).astype(float)
                says_above = noise.lapse / 2 + (1 - noise.lapse) * right       # [G]
                bits += weight * (_entropy(masses[k] @ says_above)
                                  - masses[k] @ _entropy(says_above))
        return float(bits)

    @property
    def progressing(self) -> bool:
        """Whether the next answer is expected to narrow the search: ``information()`` of at
        least ``SLOW_BITS``. ``False`` in a noisy person's end game, when the blur of their
        judgement is wider than what is left to find (then more picks barely help)."""
        return self.information() >= SLOW_BITS

    def _choose(self, proposal: Proposal, index: int) -> None:
        v = proposal.axes[1]  # ∝ −aᵢ·eᵢ + aⱼ·eⱼ
        i, j, signs = int(np.argmin(v)), int(np.argmax(v)), QUADRANTS[index]
        expected_distance = self.uncertainty()   # as when proposed: the posterior is unchanged
        evidence = np.empty(len(self.noises))
        for m, noise in enumerate(self.noises):
            width = self._width(noise, expected_distance)
            # P(the person's judgement puts t on the answer's side), per coordinate: a
            # step at the cut for a sharp person, a probit ramp of the width otherwise.
            sides = {}
            for k, s in ((i, signs[0]), (j, signs[1])):
                offset = s * (self.grid[k] - proposal.centre[k])
                sides[k] = ndtr(offset / width) if width > 0 else (offset > 0).astype(float)
            agree = {k: float(self.masses[m, k] @ sides[k]) for k in (i, j)}
            evidence[m] = noise.lapse / 4 + (1 - noise.lapse) * agree[i] * agree[j]
            for k, other in ((i, j), (j, i)):
                # This pick's likelihood given tₖ, the other coordinate integrated out.
                likelihood = noise.lapse / 4 + (1 - noise.lapse) * sides[k] * agree[other]
                posterior = self.masses[m, k] * likelihood
                posterior = np.maximum(posterior, FLOOR * posterior.max())
                self.masses[m, k] = posterior / posterior.sum()
        self._update(evidence, (i, j), proposal.round)

    def _update(self, evidence: np.ndarray, asked: tuple[int, int], round_: int) -> None:
        """Weigh the hypotheses by their ``evidence`` [M] for the answer, re-mix, move on."""
        i, j = asked
        self.weights = self.weights * evidence
        self.weights /= self.weights.sum()
        # Other coordinates' posteriors did not change, only the weights: re-mix them all
        # only when the weights have moved (cheap rounds for exact people, large k).
        if np.abs(self.weights - self.mixed_with).max() > REMIX:
            self._mix(self.weights)
        else:
            self._mix(self.mixed_with, [i, j])
        self.last_asked[[i, j]] = round_
        self.current = self.quantile(0.5)

    def _same(self, proposal: Proposal) -> None:
        """The four looked alike: both asked coordinates likely lie near their cuts."""
        v = proposal.axes[1]
        i, j = int(np.argmin(v)), int(np.argmax(v))
        moves = np.abs(proposal.axes[0]) * proposal.steps[0]                  # [k]: mᵢ, mⱼ
        typical = np.sqrt(self.uncertainty() ** 2 + moves[i] ** 2 + moves[j] ** 2)   # d̄
        # exp(−aₖ·|tₖ − cₖ| / jnd) per asked coordinate: the factors of exp(−S(t)/jnd).
        alike = {k: np.exp(-2 * moves[k] / typical
                           * np.abs(self.grid[k] - proposal.centre[k]) / self.jnd)
                 for k in (i, j)}
        evidence = np.empty(len(self.noises))
        for m in range(len(self.noises)):
            expected = {k: float(self.masses[m, k] @ alike[k]) for k in (i, j)}
            evidence[m] = SAME_LAPSE + (1 - SAME_LAPSE) * expected[i] * expected[j]
            for k, other in ((i, j), (j, i)):
                likelihood = SAME_LAPSE + (1 - SAME_LAPSE) * alike[k] * expected[other]
                posterior = self.masses[m, k] * likelihood
                posterior = np.maximum(posterior, FLOOR * posterior.max())
                self.masses[m, k] = posterior / posterior.sum()
        self._update(evidence, (i, j), proposal.round)
