"""The generator's public face: bundles, samplers, and the one function that draws latents.

A *bundle* is what leaves pre-training or tuning: both networks' weights, the
config that builds them and a little provenance (``save_bundle``/
``load_bundle``). A tuned result may also change how its latents are drawn,
so every consumer that draws images (evaluate, quality, the report's grids,
collect, ``pirtune-serve``, the search and export) loads a *sampler*
(``load_sampler``): the generator plus

* a latent prior (``tune.method=latent``): images are G(T(ε, c), c) with
  ε ~ N(0, I); the search moves in ε, and every logged latent is an ε;
* a selector (``tune.method=select``): ε is chosen among fresh N(0, I) draws
  by the estimator (best-of-n), so every image is one G already draws.

``draw_latents`` is the one place latents are drawn for a given set of
classes; ``render`` turns (latent, class) pairs into images.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.torch_version import TorchVersion

from pirtune.errors import UsageError
from pirtune.estimator.files import estimator_from_saved
from pirtune.files import atomic_write
from pirtune.models.protocol import ImageGenerator

if TYPE_CHECKING:
    from pirtune.models.acgan import ACGANModule

BUNDLE_FORMAT = "pirtune-acgan-bundle/1"


@torch.no_grad()
def render(generator: ImageGenerator, z: torch.Tensor, labels: torch.Tensor,
           batch_size: int = 256) -> torch.Tensor:
    """Images in [0, 1] [N, 3, R, R] for latents z [N, latent] and classes [N].

    Any ``ImageGenerator`` (a ``Sampler`` too). Runs in eval mode (batch norm
    uses its running statistics), in batches, on the generator's device, and
    restores the generator's mode afterwards.
    """
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    images = torch.cat([
        generator.images(z[i:i + batch_size].to(device),
                         labels[i:i + batch_size].to(device)).float()
        for i in range(0, len(z), batch_size)
    ])
    generator.train(was_training)
    return images.clamp(0, 1)


def draw_latents(generator: nn.Module, labels: torch.Tensor,
                 rng: torch.Generator) -> torch.Tensor:
    """Latents [N, latent] for the classes ``labels`` [N], drawn as the bundle draws them.

    N(0, I) from ``rng``, unless ``generator`` is a ``Sampler`` with a selector,
    which keeps only the draws its estimator accepts. The same ``rng`` state
    gives the same latents.
    """
    if isinstance(generator, Sampler) and generator.selector is not None:
        return generator.selector.choose(generator.generator, labels, rng)
    return torch.randn(len(labels), generator.latent_dim, generator=rng)


def balanced_classes(n: int, num_classes: int, rng: torch.Generator) -> torch.Tensor:
    """n class labels, as equal in number as n allows, in random order [n]."""
    return (torch.arange(n) % num_classes)[torch.randperm(n, generator=rng)]


def draw(generator: nn.Module, n: int, seed: int,
         batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images in [0, 1] of ``generator`` and their classes [n]: balanced classes,
    then latents, from ``seed``.

    Two generators of the same shape draw the same (z, c) for the same seed, so
    their images can be compared one by one.
    """
    rng = torch.Generator().manual_seed(seed)
    labels = balanced_classes(n, generator.num_classes, rng)
    z = draw_latents(generator, labels, rng)
    return render(generator, z, labels, batch_size), labels


def class_grid(generator: nn.Module, per_class: int, seed: int = 0) -> torch.Tensor:
    """``per_class`` samples of every class from seeded latents, class by class.

    Returns images [C·per_class, 3, R, R] in [0, 1] (see ``render``).
    """
    rng = torch.Generator().manual_seed(seed)
    labels = torch.arange(generator.num_classes).repeat_interleave(per_class)
    return render(generator, draw_latents(generator, labels, rng), labels)


class LatentPrior(nn.Module):
    """A per-class map ε ↦ z = μ_c + s_c ⊙ ε from N(0, I) noise to G's latents.

    It starts at the identity (μ = 0, s = 1), where its KL to N(0, I) is 0.
    ``form="shift"`` learns the mean μ_c only (s = 1): z keeps N(0, I)'s
    spread, so it stays in the typical set where G draws well; ``"diagonal"``
    learns a scale s_c too. ``max_shift`` caps ‖μ_c‖ (a hard constraint on how
    far the prior may move), smoothly: μ·min(1, r/‖μ‖).

    Args:
        latent_dim: size of z and ε.
        num_classes: one map per class.
        form: ``"shift"`` or ``"diagonal"``.
        max_shift: ``None``, or the largest ‖μ_c‖.
    """

    FORMS = ("shift", "diagonal")

    def __init__(self, latent_dim: int, num_classes: int, form: str = "shift",
                 max_shift: float | None = None) -> None:
        super().__init__()
        if form not in self.FORMS:
            raise UsageError(f"tune.method.form={form!r} is unknown; choose shift or diagonal")
        if max_shift is not None and not max_shift > 0:
            raise UsageError(f"tune.method.max_shift={max_shift} must be positive, or null")
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.form, self.max_shift = form, max_shift
        self.mu = nn.Parameter(torch.zeros(num_classes, latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(num_classes, latent_dim),
                                      requires_grad=form == "diagonal")

    def means(self) -> torch.Tensor:
        """μ_c [C, latent], after the ``max_shift`` cap."""
        if self.max_shift is None:
            return self.mu
        norm = self.mu.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return self.mu * (self.max_shift / norm).clamp(max=1.0)

    def forward(self, eps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """z [B, latent] for noise ε [B, latent] and classes [B]."""
        return self.means()[labels] + self.log_scale[labels].exp() * eps

    def kl(self) -> torch.Tensor:
        """KL(N(μ_c, diag s_c²) ‖ N(0, I)) for each class [C], exactly.

        ½·Σ_j (s_j² + μ_j² − 1 − log s_j²).
        """
        s2 = (2 * self.log_scale).exp()
        return 0.5 * (s2 + self.means().pow(2) - 1 - 2 * self.log_scale).sum(1)


class Selector(nn.Module):
    """Best-of-n sampling: keep the latents whose images the estimator scores highest.

    Two rules, both over fresh N(0, I) draws of the wanted class:

    * threshold (``temperature=None``): accept a draw when its estimate is above
      the class's threshold, the (1 − ``acceptance``) quantile of the estimate
      over ``calibration`` draws of that class, and a draw whose estimate equals
      the threshold with the probability that makes the accepted share
      ``acceptance`` (an estimate at temperature 0.01 sits near the 100 bins'
      centres, so many draws tie; accepting every tie would keep far more than
      asked). The expected cost is 1/``acceptance`` images per sample;
    * softmax (``temperature`` τ > 0): draw n = ⌈1/``acceptance``⌉ candidates
      and keep one with probability ∝ exp(R/τ).

    The generator never changes: every image is one G draws (pixel-equal to
    G on the chosen latent).

    Realism (``realism`` r > 0, a hard-threshold form of discriminator rejection
    sampling, Azadi et al. 2019): a draw is admissible only when the bundle's own
    discriminator (``critic``) rates it at or above its class's r-quantile of
    source values over the calibration draws; the estimate's rule then runs over
    admissible draws only (the threshold rule's threshold is the top ``acceptance``
    share of *all* draws among the admissible ones, so the kept share stays
    ``acceptance`` and needs acceptance ≤ 1 − r). Why: the generator's draws that
    score highest on an objective are often its least realistic (for "blue", the
    bluest 30 % of the shipped generator's draws hold 0.73 precision against real
    scenes, the whole 0.86), and an estimator fitted on a few hundred picks also
    rates some of its worst draws highly. The discriminator ranks realism with
    AUC 0.77 against the precision test; ``scripts/bench/select_realism.py``
    measures the trade-off over (r, acceptance).

    Args:
        estimator_file: the estimator's saved dict (``pirtune.estimator``'s file
            format), kept whole so a bundle carries its own selector.
        acceptance: the share of draws kept, in (0, 1].
        temperature: ``None`` (threshold rule) or τ > 0 (softmax rule).
        thresholds: the per-class thresholds [C] (set by ``calibrate``).
        tie_shares: per class, the probability a draw at the threshold is kept [C].
        batch_size: candidates rendered and scored at a time.
        realism: the share r in [0, 1) of each class's draws the critic rejects (0: none).
        critic: the bundle's discriminator (needed when ``realism`` > 0).
        critic_thresholds: per class, the critic's r-quantile [C] (set by ``calibrate``).
    """

    def __init__(self, estimator_file: dict[str, Any], acceptance: float,
                 temperature: float | None = None, thresholds: list[float] | None = None,
                 batch_size: int = 256, tie_shares: list[float] | None = None,
                 realism: float = 0.0, critic: nn.Module | None = None,
                 critic_thresholds: list[float] | None = None) -> None:
        super().__init__()
        check_acceptance(acceptance, temperature, realism)
        if realism > 0 and critic is None:
            raise UsageError(f"tune.method.realism={realism} needs the generator's "
                             "discriminator, which this bundle does not give; set "
                             "tune.method.realism=0")
        self.realism = realism
        self.critic = None if critic is None else critic.eval().requires_grad_(False)
        self.critic_thresholds = (None if critic_thresholds is None
                                  else torch.tensor(critic_thresholds))
        self.estimator_file = estimator_file
        self.estimator = estimator_from_saved(estimator_file)
        self.acceptance = acceptance
        self.temperature = temperature
        self.thresholds = None if thresholds is None else torch.tensor(thresholds)
        self.tie_shares = (None if thresholds is None else
                           torch.tensor(tie_shares if tie_shares is not None
                                        else [1.0] * len(thresholds)))
        self.batch_size = batch_size
        self.seconds_per_image: float | None = None

    def train(self, mode: bool = True) -> Selector:
        """Its networks are frozen judges: they stay in eval mode (no dropout, running
        batch statistics) whatever mode the sampler around them is put in."""
        super().train(mode)
        self.estimator.eval()
        if self.critic is not None:
            self.critic.eval()
        return self

    @torch.no_grad()
    def judge(self, generator: nn.Module, z: torch.Tensor, labels: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The estimator's PIR [N] of G's images for (z [N, latent], labels [N]), and the
        critic's source value [N] of each (``None`` without a critic); one render."""
        images = render(generator, z, labels, self.batch_size)
        batches = range(0, len(images), self.batch_size)
        device = next(self.estimator.parameters()).device
        estimates = torch.cat([self.estimator(images[i:i + self.batch_size].to(device))
                               .float().cpu() for i in batches])
        if self.critic is None:
            return estimates, None
        device = next(self.critic.parameters()).device
        realism = torch.cat([
            self.critic(images[i:i + self.batch_size].to(device) * 2 - 1,
                        labels[i:i + self.batch_size].to(device))[0].float().cpu()
            for i in batches])
        return estimates, realism

    def scores(self, generator: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The estimator's PIR [N] of G's images for (z [N, latent], labels [N])."""
        return self.judge(generator, z, labels)[0]

    def admissible_scores(self, generator: nn.Module, z: torch.Tensor,
                          labels: torch.Tensor) -> torch.Tensor:
        """The estimates [N], −∞ where the critic rejects the draw (``realism`` > 0)."""
        return self._mask(*self.judge(generator, z, labels), labels)

    def _mask(self, estimates: torch.Tensor, realism: torch.Tensor | None,
              labels: torch.Tensor) -> torch.Tensor:
        """``estimates`` [N], −∞ where the critic's ``realism`` [N] is below its class's
        threshold (``realism`` > 0)."""
        if self.realism == 0:
            return estimates
        if self.critic_thresholds is None:
            raise UsageError("the selector has no critic thresholds; calibrate it first")
        return estimates.masked_fill(realism < self.critic_thresholds[labels], -math.inf)

    def calibrate(self, generator: nn.Module, calibration: int, seed: int) -> None:
        """Set each class's thresholds from ``calibration`` draws of it: the critic's
        (``realism`` > 0) and the estimate's (threshold rule)."""
        rng = torch.Generator().manual_seed(seed)
        thresholds, ties, critic_thresholds = [], [], []
        start = time.perf_counter()
        for c in range(generator.num_classes):
            labels = torch.full((calibration,), c)
            z = torch.randn(calibration, generator.latent_dim, generator=rng)
            scores, realism = self.judge(generator, z, labels)
            if self.realism > 0:
                critic_thresholds.append(float(torch.quantile(realism, self.realism)))
                scores = scores.masked_fill(realism < critic_thresholds[-1], -math.inf)
            # The smallest score among the top `acceptance` share of draws.
            kept = max(1, round(self.acceptance * calibration))
            threshold = scores.sort(descending=True).values[kept - 1]
            above = float((scores > threshold).float().mean())
            at = float((scores == threshold).float().mean())
            thresholds.append(float(threshold))
            ties.append(min(1.0, max(0.0, (self.acceptance - above) / at)))
        self.thresholds = torch.tensor(thresholds)
        self.tie_shares = torch.tensor(ties)
        if self.realism > 0:
            self.critic_thresholds = torch.tensor(critic_thresholds)
        seconds = (time.perf_counter() - start) / (calibration * generator.num_classes)
        # A sample costs 1/acceptance candidates (threshold) or ⌈1/acceptance⌉ (softmax).
        self.seconds_per_image = seconds * self.candidates_per_sample

    @property
    def candidates_per_sample(self) -> float:
        """Expected candidates rendered and scored for one kept sample."""
        if self.temperature is None:
            return 1 / self.acceptance
        return float(math.ceil(1 / self.acceptance - 1e-9))

    def choose(self, generator: nn.Module, labels: torch.Tensor,
               rng: torch.Generator) -> torch.Tensor:
        """Latents [N, latent] for ``labels`` [N], chosen by the rule (class docstring)."""
        if self.temperature is not None:
            return self._softmax(generator, labels, rng)
        if self.thresholds is None:
            raise UsageError("the selector has no thresholds; calibrate it first")
        z = torch.empty(len(labels), generator.latent_dim)
        waiting = torch.arange(len(labels))
        for _ in range(10_000):
            if not len(waiting):
                return z
            candidates = torch.randn(len(waiting), generator.latent_dim, generator=rng)
            scores = self.admissible_scores(generator, candidates, labels[waiting])
            threshold = self.thresholds[labels[waiting]]
            tie = torch.rand(len(waiting), generator=rng) < self.tie_shares[labels[waiting]]
            kept = (scores > threshold) | ((scores == threshold) & tie)
            z[waiting[kept]] = candidates[kept]
            waiting = waiting[~kept]
        raise UsageError(f"the selector accepted too few draws ({len(waiting)} of {len(labels)} "
                         "still waiting after 10,000 rounds); raise tune.method.acceptance")

    def _softmax(self, generator: nn.Module, labels: torch.Tensor,
                 rng: torch.Generator) -> torch.Tensor:
        n = int(self.candidates_per_sample)
        candidates = torch.randn(len(labels), n, generator.latent_dim, generator=rng)
        flat_labels = labels.repeat_interleave(n)
        estimates, realism = self.judge(generator, candidates.flatten(0, 1), flat_labels)
        scores = self._mask(estimates, realism, flat_labels).view(-1, n)
        # A row the critic rejects whole keeps its candidates, weighed by the estimate alone.
        none = torch.isinf(scores).all(dim=1, keepdim=True)
        scores = torch.where(none, estimates.view(-1, n), scores)
        chosen = torch.multinomial(torch.softmax(scores / self.temperature, dim=1), 1,
                                   generator=rng).squeeze(1)
        return candidates[torch.arange(len(labels)), chosen]

    def state(self) -> dict[str, Any]:
        """What a bundle keeps of the selector."""
        return {"estimator": self.estimator_file, "acceptance": self.acceptance,
                "temperature": self.temperature,
                "thresholds": None if self.thresholds is None else self.thresholds.tolist(),
                "tie_shares": None if self.tie_shares is None else self.tie_shares.tolist(),
                "realism": self.realism,
                "critic_thresholds": (None if self.critic_thresholds is None
                                      else self.critic_thresholds.tolist()),
                "seconds_per_image": self.seconds_per_image}


def check_acceptance(acceptance: float, temperature: float | None,
                     realism: float = 0.0) -> None:
    """Refuse an acceptance outside (0, 1], a temperature ≤ 0, or a realism share
    outside [0, 1) or above 1 − acceptance, naming the key."""
    if not 0 < acceptance <= 1:
        raise UsageError(f"tune.method.acceptance={acceptance} must lie in (0, 1] (the share "
                         "of draws kept, e.g. 0.3)")
    if not 0 <= realism < 1:
        raise UsageError(f"tune.method.realism={realism} must lie in [0, 1) (the share of "
                         "draws the discriminator rejects, e.g. 0.2; 0 for none)")
    if temperature is None and acceptance > 1 - realism + 1e-9:
        raise UsageError(f"tune.method.acceptance={acceptance} keeps more than the "
                         f"{1 - realism:g} of draws that tune.method.realism={realism} admits; "
                         f"lower one of them")
    if temperature is not None and not temperature > 0:
        raise UsageError(f"tune.method.temperature={temperature} must be positive, or null "
                         "for the threshold rule")


class Sampler(nn.Module):
    """A generator and how its latents are drawn: what a tuned result is.

    Follows the ``ImageGenerator`` protocol, with the latent it takes being
    the noise ε: ``images(ε, c) = G.images(T(ε, c), c)`` with T the latent
    prior (the identity without one). Draw ε with ``draw_latents``.

    Args:
        generator: the generator G (its weights are the bundle's).
        prior: ``None`` or a ``LatentPrior``.
        selector: ``None`` or a ``Selector``.
    """

    def __init__(self, generator: nn.Module, prior: LatentPrior | None = None,
                 selector: Selector | None = None) -> None:
        super().__init__()
        self.generator = generator
        self.prior = prior
        self.selector = selector
        self.latent_dim: int = generator.latent_dim
        self.num_classes: int = generator.num_classes
        self.resolution: int = generator.resolution
        # A wrapper made around a generator in eval mode is in eval mode, so ``render``
        # restores it to eval (a frozen G must never see batch statistics).
        self.train(generator.training)

    @property
    def method(self) -> str:
        """``plain``, ``latent`` or ``select``."""
        return "latent" if self.prior is not None else (
            "select" if self.selector is not None else "plain")

    def latent(self, eps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """G's latent z [B, latent] for noise ε [B, latent] and classes [B]."""
        return eps if self.prior is None else self.prior(eps, labels)

    def forward(self, eps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1]."""
        return self.generator(self.latent(eps, labels), labels)

    def images(self, eps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, R, R] in [0, 1]; differentiable."""
        return self.generator.images(self.latent(eps, labels), labels)

    def features(self, eps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """G's first-layer features at T(ε, c) (GANSpace's space, searched in ε)."""
        return self.generator.features(self.latent(eps, labels), labels)


# -- bundles: what leaves pre-training and tuning ---------------------------------------

def save_bundle(module: ACGANModule, model_cfg: Mapping[str, Any], path: Path,
                sampler: Mapping[str, Any] | None = None, **provenance: Any) -> str:
    """Write both networks, their config and provenance to ``path``; return its sha256.

    ``sampler``: how the latents are drawn, when not N(0, I) (``sampler_state``).
    Written atomically (``pirtune.files``): a crash never leaves half a bundle.
    """
    bundle = {
        "format": BUNDLE_FORMAT,
        "model": OmegaConf.to_container(OmegaConf.create(model_cfg), resolve=True),
        "generator": {k: v.cpu() for k, v in module.sampler.state_dict().items()},
        "discriminator": {k: v.cpu() for k, v in module.discriminator.state_dict().items()},
        "iteration": module.iteration,
        "provenance": provenance,
    }
    if sampler is not None:
        bundle["sampler"] = dict(sampler)
    with atomic_write(path) as f:
        torch.save(bundle, f)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sampler_state(sampler: Sampler) -> dict[str, Any] | None:
    """What ``save_bundle`` keeps of a sampler's prior or selector (``None``: plain)."""
    if sampler.prior is not None:
        prior = sampler.prior
        return {"method": "latent", "form": prior.form, "max_shift": prior.max_shift,
                "state_dict": {k: v.detach().cpu() for k, v in prior.state_dict().items()}}
    if sampler.selector is not None:
        return {"method": "select", **sampler.selector.state()}
    return None


def _read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(
            f"generator checkpoint {path} does not exist; run `pirtune-train stage=pretrain` "
            "or point generator_ckpt=<file> at a bundle"
        )
    # Bundles written before provenance held plain strings carry torch's version
    # object, a str subclass: the one class besides weights a bundle may hold.
    with torch.serialization.safe_globals([TorchVersion]):
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise UsageError(
            f"{path} is not a pirtune generator bundle; give the generator.pt a pretrain "
            "run writes (not a Lightning .ckpt)"
        )
    return bundle


def load_bundle(path: str | Path) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """Rebuild (generator, discriminator, bundle metadata) from a bundle file.

    The raw networks, for training on; to draw images use ``load_sampler``.
    """
    bundle = _read(path)
    generator = instantiate(bundle["model"]["generator"])
    discriminator = instantiate(bundle["model"]["discriminator"])
    generator.load_state_dict(bundle["generator"])
    discriminator.load_state_dict(bundle["discriminator"])
    meta = {k: v for k, v in bundle.items() if k not in ("generator", "discriminator")}
    return generator, discriminator, meta


def load_sampler(path: str | Path) -> tuple[Sampler, dict[str, Any]]:
    """The bundle's ``Sampler`` (its generator with its prior or selector) and metadata."""
    generator, discriminator, meta = load_bundle(path)
    return sampler_from_state(generator, meta.get("sampler"), discriminator), meta


def sampler_from_state(generator: nn.Module, state: Mapping[str, Any] | None,
                       discriminator: nn.Module | None = None) -> Sampler:
    """A ``Sampler`` for ``generator`` from what ``sampler_state`` kept (``None``: plain);
    ``discriminator``: the bundle's, the critic of a selector with ``realism`` > 0."""
    if state is None:
        return Sampler(generator)
    if state["method"] == "latent":
        prior = LatentPrior(generator.latent_dim, generator.num_classes, state["form"],
                            state["max_shift"])
        prior.load_state_dict(state["state_dict"])
        return Sampler(generator, prior=prior.requires_grad_(False))
    if state["method"] == "select":
        realism = state.get("realism", 0.0)
        selector = Selector(state["estimator"], state["acceptance"], state["temperature"],
                            state["thresholds"], tie_shares=state.get("tie_shares"),
                            realism=realism, critic=discriminator if realism > 0 else None,
                            critic_thresholds=state.get("critic_thresholds"))
        selector.seconds_per_image = state.get("seconds_per_image")
        return Sampler(generator, selector=selector)
    raise UsageError(f"the bundle's sampler method {state['method']!r} is unknown; "
                     "a newer pirtune wrote it")
