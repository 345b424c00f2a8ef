"""A head start for the next person: earlier people's choice model as a new session's prior.

``pirtune-serve --prior <estimator.pt>`` takes the choice model that
``pirtune-train data=interactions`` fitted on earlier sessions
(``pirtune.estimator.choice``) and starts every new search from what those
people picked. At start-up it draws ``draws`` latents of every class with the
served generator (``draw_latents``, as the sessions draw theirs), renders
them and scores them with the model's utility u. Under Plackett–Luce a person
picks x among any set of images with probability ∝ exp(u(x)), so among endless
draws of the generator the image a person of that crowd would pick is
distributed as p(z)·exp(u(G(z))): the draws weighted w ∝ exp(u / τ) at τ = 1
estimate it. Where a few draws would take nearly all the weight, τ is raised
until the weights keep an effective sample (Kish's (Σw)²/Σw²) of ``MIN_ESS``
draws, so no handful of images decides.

In a session's coordinates y = (z − origin)·basisᵀ the weighted draws have a
mean m and a spread s per coordinate. ``CrowdPrior.start`` gives the search
its start point m and a per-coordinate SD √(s² + ½(m − m₀)²), where m₀ is the
generator's own prior centre (N(0, I) projected): the crowd's spread, widened
by half the squared distance its centre moved, so that a newcomer who wants
something else than the crowd is not held to it. ``PreferenceSearch`` takes
both as its prior, and its first image is m. ``AxisSearch`` and
``RandomSearch`` start at m with their usual first step (a step fitted to the
spread slowed newcomers with unrelated goals). ``docs/search.md`` has the
figures behind both choices. The numbers go into the session's stored
settings, so a session replays from its log without the prior file.

What a prior can buy is bounded: an answer carries at most 2 bits, and even
the exact distribution of the newcomers' targets saves on average about its
KL divergence from the generator's own draws, which for targets that share
one objective (a colour) leaves every other feature of the image to be
searched for (``docs/search.md``).

``load_prior`` refuses, with one sentence naming the value and the fix, a
file that is missing, unreadable, not a choice model, or one that does not
name the generator it learnt from or names another one than the served
generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pirtune.errors import UsageError
from pirtune.estimator.choice import FrozenChoiceModel
from pirtune.estimator.files import estimator_from_saved, read_estimator_file
from pirtune.files import file_sha256
from pirtune.models.bundle import draw_latents, render

DRAWS = 1024        # latents drawn and scored per class at start-up
MIN_ESS = 32        # the fewest effective draws the crowd's weights may keep
TEMPERATURE_STEP = 1.25   # τ grows by this factor until the weights keep MIN_ESS draws
WIDEN = 0.5         # the share of the squared shift of the centre added to the prior's variance
HOW_TO_MAKE = ("fit one on the picks this generator served: pirtune-train stage=estimate "
               "data=interactions data.path=<the .db pirtune-serve wrote>")


@dataclass(frozen=True)
class PriorStart:
    """Where a session's search starts, in its coordinates.

    Attributes:
        centre: the start point [k] (the crowd's weighted mean).
        sd: the prior SD of the target around it, per coordinate [k].
    """

    centre: np.ndarray
    sd: np.ndarray


def crowd_weights(utilities: np.ndarray, min_ess: float = MIN_ESS) -> tuple[np.ndarray, float]:
    """The draws' weights ∝ exp(u / τ) (summing to 1) and τ: 1, or raised until the
    weights keep an effective sample of ``min_ess`` draws (all of them, if fewer)."""
    u = np.asarray(utilities, dtype=np.float64)
    if u.ndim != 1 or not len(u) or not np.all(np.isfinite(u)):
        raise UsageError(f"the prior needs finite utilities of one or more draws, not {u!r:.80}")
    floor, temperature = min(float(min_ess), len(u)), 1.0
    while True:
        logits = (u - u.max()) / temperature
        weights = np.exp(logits) / np.exp(logits).sum()
        if 1 / np.sum(weights ** 2) >= floor * (1 - 1e-9) or temperature > 1e12:
            return weights, temperature
        temperature *= TEMPERATURE_STEP


def tilted_start(latents: np.ndarray, weights: np.ndarray, origin: np.ndarray,
                 basis: np.ndarray, widen: float = WIDEN) -> PriorStart:
    """The prior of a session with coordinates y = (z − origin)·basisᵀ from weighted draws.

    Args:
        latents: the draws [N, n].
        weights: their weights [N], summing to 1.
        origin: the session's origin latent [n].
        basis: the session's orthonormal directions [k, n].
        widen: the share of the squared distance between the draws' weighted mean
            and the generator's own prior centre (−basis·origin) added to each
            coordinate's variance.
    """
    coords = (np.asarray(latents) - origin) @ basis.T                       # [N, k]
    centre = weights @ coords                                               # [k]
    spread = weights @ (coords - centre) ** 2                               # [k]
    own = -basis @ origin                                                   # [k]
    sd = np.sqrt(spread + widen * (centre - own) ** 2)
    return PriorStart(centre, np.maximum(sd, 1e-6))


@dataclass(frozen=True)
class ClassPool:
    """One class's scored draws: latents [N, n], weights [N], τ and the effective sample."""

    latents: np.ndarray
    weights: np.ndarray
    temperature: float
    ess: float


class CrowdPrior:
    """The crowd's choice model turned into every new session's prior (module docstring).

    Args:
        model: the frozen choice model.
        generator: the served generator (a sampler: its own way of drawing latents).
        name: the prior file's name, recorded with every session.
        sha256: the prior file's SHA-256, recorded with every session.
        draws: latents drawn and scored per class.
        seed: seeds the draws (the same seed, the same prior).
    """

    def __init__(self, model: FrozenChoiceModel, generator: nn.Module, name: str,
                 sha256: str, draws: int = DRAWS, seed: int = 0) -> None:
        if draws < 1:
            raise UsageError(f"draws={draws} must be at least 1")
        self.name, self.sha256 = name, sha256
        rng = torch.Generator().manual_seed(seed)
        self.pools: list[ClassPool] = []
        for cls in range(generator.num_classes):
            labels = torch.full((draws,), cls)
            latents = draw_latents(generator, labels, rng)                  # [N, n]
            with torch.inference_mode():
                images = render(generator, latents, labels)                 # [N, 3, R, R]
                utilities = torch.cat([model.utilities(images[i:i + 256])
                                       for i in range(0, draws, 256)])
            weights, temperature = crowd_weights(utilities.double().numpy())
            self.pools.append(ClassPool(latents.double().numpy(), weights, temperature,
                                        float(1 / np.sum(weights ** 2))))

    def start(self, origin: np.ndarray, basis: np.ndarray, cls: int) -> PriorStart:
        """The prior of a session of class ``cls`` through ``origin`` along ``basis`` [k, n]."""
        pool = self.pools[cls]
        return tilted_start(pool.latents, pool.weights, origin, basis)


def load_prior(path: str | Path, generator: nn.Module, generator_sha256: str,
               draws: int = DRAWS) -> CrowdPrior:
    """The prior of the choice model at ``path`` for the generator with ``generator_sha256``.

    Raises:
        UsageError: the file is missing or unreadable, holds no choice model, does
            not record the generator it learnt from, or records another one; the
            message names the file and the fix, in one sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--prior {path} does not exist; give the estimator.pt that "
                         f"pirtune-train data=interactions wrote, or {HOW_TO_MAKE}")
    try:
        saved = read_estimator_file(path)
    except Exception as err:   # torch.load's many ways of failing on a damaged file
        if isinstance(err, UsageError):
            raise
        raise UsageError(f"--prior {path} cannot be read ({type(err).__name__}); it is damaged "
                         f"or not a pirtune estimator: {HOW_TO_MAKE}") from err
    if saved.get("loss") != "choice":
        raise UsageError(f"--prior {path} is a PIR estimator, not a choice model of people's "
                         f"picks; {HOW_TO_MAKE}")
    generators = saved.get("generators")
    if not generators:
        raise UsageError(f"--prior {path} does not record which generator's images it learnt "
                         "from (pirtune kept no such record when it was fitted); fit it again "
                         "in a fresh run: pirtune-train stage=estimate data=interactions "
                         "data.path=<the .db pirtune-serve wrote> name=<a new name>")
    if generator_sha256 not in generators:
        raise UsageError(f"--prior {path} learnt from the picks of generator(s) sha256 "
                         f"{', '.join(g[:12] for g in generators)}, not the served generator "
                         f"({generator_sha256[:12]}); serve that generator with --checkpoint, "
                         f"or {HOW_TO_MAKE}")
    try:
        model = estimator_from_saved(saved)
    except Exception as err:
        raise UsageError(f"--prior {path} holds a choice model that cannot be built "
                         f"({type(err).__name__}: {err}); {HOW_TO_MAKE}") from err
    return CrowdPrior(model, generator, path.name, file_sha256(path), draws)
