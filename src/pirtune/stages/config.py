"""The typed config of every stage: dataclasses in Hydra's ConfigStore.

``conf/train.yaml`` extends ``TrainConfig`` (stored as ``pirtune_schema``), so
a value of the wrong type fails when Hydra composes the command line, with
Hydra's own message. Each stage is called with its own section, converted to
its dataclass by ``OmegaConf.to_object``, whose ``__post_init__`` refuses
counts below one. A section holds everything its stage reads (``train.yaml``
interpolates shared values such as ``seed`` and ``objective`` into it), and
that is what the run directory's stage record fingerprints (``rundir``).

Groups whose options build objects (``data``, ``model``, ``objective``,
``trainer``, ``logger``, the estimator's ``network``) stay untyped: their
``_target_`` decides their keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from pirtune.errors import UsageError
from pirtune.metrics.features import FEATURES
from pirtune.metrics.tilted import DEFAULT_ESS_FLOOR

# The feature spaces of the quality metrics: an Enum, so a misspelt name fails
# when Hydra composes the command line.
Features = Enum("Features", [(name, name) for name in FEATURES])  # type: ignore[misc]

SCHEMA_NAME = "pirtune_schema"

TARGETS = ("onehot", "hl_gauss")                   # estimator.targets
LOSSES = ("bins", "choice")                        # estimator.loss
REWARDS = ("mean", "conservative")                 # tune.reward
ANCHOR_SPACES = ("pixels", "features")             # tune.anchor_space
EARLY_STOP = ("off", "record", "stop")             # tune.early_stop

# Every key any shipped objective kind takes, null unless its option sets it. Each
# option of the objective group starts from these (``defaults: [keys, _self_]``), so
# ``-m objective=vgg_pool2,color_blue objective.k=20`` composes: Hydra first composes
# the sweep with the default (colour) objective, which must accept ``k`` too. Null
# keys and keys a class does not take are not passed to it (``build_objective``).
OBJECTIVE_KEYS = {"colours": None, "layer": None, "filter": None, "k": None, "seed": None,
                  "weights": None, "input_size": None}


class Section:
    """A stage's config section: positivity checks and what its fingerprint leaves out.

    ``positive`` names the counts that must be at least 1; ``not_results``
    the dotted keys that change how a stage runs but not what it writes
    (batch sizes of pure inference, worker counts, cache folders), which a
    run directory lets differ between runs of a stage. ``added`` holds keys
    added after runs were named, with the value every run had before them:
    at that value a key is left out, so older runs keep their names and their
    stage records still match.
    """

    name: ClassVar[str] = ""
    positive: ClassVar[tuple[str, ...]] = ()
    not_results: ClassVar[tuple[str, ...]] = ()
    added: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        for key in self.positive:
            value = getattr(self, key)
            # The schema's own defaults hold "???" (MISSING) or interpolations.
            if isinstance(value, int) and value < 1:
                raise UsageError(f"{self.name}.{key}={value} must be at least 1")

    def fingerprint(self) -> dict[str, Any]:
        """The section's settings that decide its results, flattened to dotted keys."""
        return self.results(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def results(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` of this section (a plain tree) without ``not_results``, flattened."""
        return {key: value for key, value in _flatten(values).items()
                if not any(key == skip or key.startswith(skip + ".")
                           for skip in cls.not_results)
                and not (key in cls.added and cls.added[key] == value)}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Enum):
        return {prefix[:-1]: tree.value}
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out |= _flatten(value, f"{prefix}{key}.")
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: list(tree) if isinstance(tree, tuple) else tree}


_UNUSED_DATA = ("data.num_workers", "data.cache_dir")


@dataclass
class PretrainConfig(Section):
    """Pre-training the ACGAN on ``data`` (C.1)."""

    name: ClassVar[str] = "pretrain"
    positive: ClassVar[tuple[str, ...]] = ("iterations", "checkpoint_every", "sample_every",
                                           "sample_per_class")
    not_results: ClassVar[tuple[str, ...]] = (*_UNUSED_DATA, "model.compile_mode",
                                              "model.whole_step", "model.channels_last",
                                              "ckpt_path", "checkpoint_every", "sample_every",
                                              "quality_samples")

    iterations: int = MISSING       # D+G update pairs (the paper: 1.1e6)
    checkpoint_every: int = 500     # iterations between checkpoints (periodic ones and last.ckpt)
    sample_every: int = 500         # iterations between sample grids and quality figures
    sample_per_class: int = 16
    quality_samples: int = 500      # generated and real images of the quality figures; 0: none
    seed: int = 0
    ckpt_path: str | None = None    # resume from this Lightning checkpoint instead of last.ckpt
    model: Any = MISSING            # the model group (ACGANModule and its networks)
    data: Any = MISSING             # the data group (a LightningDataModule)

    def __post_init__(self) -> None:
        super().__post_init__()
        # k = 5 nearest neighbours need more than 5 samples.
        count = self.quality_samples
        if isinstance(count, int) and (count < 0 or 0 < count <= 5):
            raise UsageError(f"pretrain.quality_samples={self.quality_samples} must be 0 (no "
                             "quality figures during pre-training) or more than 5")


@dataclass
class SampleConfig(Section):
    """A class-by-class grid of a generator's samples."""

    name: ClassVar[str] = "sample"
    positive: ClassVar[tuple[str, ...]] = ("per_class",)

    per_class: int = 32
    seed: int = 0
    generator: str = MISSING        # the bundle to draw from


@dataclass
class CollectConfig(Section):
    """Simulated users scoring the round's samples (section 2.2)."""

    name: ClassVar[str] = "collect"
    positive: ClassVar[tuple[str, ...]] = ("num_images", "impressions", "batch_size")
    not_results: ClassVar[tuple[str, ...]] = ("batch_size",)

    num_images: int = 1000          # images shown to the simulated users
    impressions: int = 1000         # times each is shown; clicks ~ Binomial(impressions, PIR)
    batch_size: int = 250           # images generated and scored at once
    seed: int = 0
    objective: Any = MISSING        # the objective group: a _target_ and its arguments


@dataclass
class EstimatorConfig(Section):
    """The estimator group: network, optimiser and training of the PIR estimator (C.3)."""

    name: ClassVar[str] = "estimator"

    network: Any = MISSING          # a _target_ building the network (PIREstimator)
    optimizer: Any = MISSING        # a partial optimizer (C.3: Adam, lr 5e-4)
    epochs: int = 20
    batch_size: int = 64
    val_fraction: float = 0.2       # held out for the report's figures
    temperature: float = 0.01       # C.3: softmax temperature of the frozen estimator in use
    members: int = 1                # an ensemble: members > 1 learn from bootstrap resamples
    targets: str = "onehot"         # onehot (C.3) or hl_gauss (Farebrother et al. 2024)
    loss: str = "bins"              # bins (C.3) or choice (Plackett–Luce over web-app rounds)
    # choice: fit a temperature on the held-out people (pirtune.estimator.calibration);
    # false keeps the network's raw utilities (how the choice model was before)
    calibrate: bool = True
    # choice: epochs without improvement of the NLL on a share of the training people
    # before training stops (the best epoch's weights kept); 0 trains every epoch
    patience: int = 0

    positive: ClassVar[tuple[str, ...]] = ("epochs", "batch_size", "members")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.targets not in TARGETS:
            raise UsageError(f"estimator.targets={self.targets!r} is unknown; choose one of: "
                             f"{', '.join(TARGETS)}")
        if self.loss not in LOSSES:
            raise UsageError(f"estimator.loss={self.loss!r} is unknown; choose one of: "
                             f"{', '.join(LOSSES)}")
        if isinstance(self.patience, int) and self.patience < 0:
            raise UsageError(f"estimator.patience={self.patience} must be 0 (train every "
                             "epoch) or a positive number of epochs")
        if self.loss == "choice" and isinstance(self.members, int) and self.members > 1:
            raise UsageError(f"estimator.members={self.members}: the choice model trains one "
                             "network; set estimator.members=1 or estimator.loss=bins")


@dataclass
class EstimateConfig(Section):
    """Fitting the PIR estimator on the round's PIR datasets, or on the web app's picks."""

    name: ClassVar[str] = "estimate"
    added: ClassVar[dict[str, Any]] = {"estimator.loss": "bins", "generators": [],
                                       "estimator.calibrate": True, "estimator.patience": 0}

    estimator: EstimatorConfig = MISSING
    seed: int = 0
    interactions: str | None = None  # data=interactions: the log or export (data.path)
    generator: str = MISSING         # renders the interaction log's images
    generators: list[str] = field(default_factory=list)  # more sessions' bundles (or folders)


@dataclass
class TuneConfig(Section):
    """Estimator-guided tuning of the generator (section 2.4)."""

    name: ClassVar[str] = "tune"
    positive: ClassVar[tuple[str, ...]] = ("steps", "checkpoint_every")
    # Runs named before tune.method existed tuned with the gradient method.
    added: ClassVar[dict[str, Any]] = {
        "method._target_": "pirtune.tuning.gradient.GradientMethod", "method": None}
    not_results: ClassVar[tuple[str, ...]] = (*_UNUSED_DATA, "compile_mode", "whole_step",
                                              "channels_last", "checkpoint_every",
                                              "hidden_objective")

    steps: int = 400                # D+G update pairs
    lr: float = 5.0e-5              # both optimisers (pre-training's types and betas)
    w_pir: float = 1000.0           # weight of the estimated-PIR term
    ema_decay: float | None = None  # a moving average of the tuned G (not in the paper)
    checkpoint_every: int = 100     # steps between tune_ckpt/last.ckpt saves
    seed: int = 0
    data: Any = MISSING             # what the discriminator keeps training on
    compile_mode: str | None = None
    whole_step: str | None = None   # graph: each iteration as one CUDA graph (ACGANModule)
    channels_last: bool = False
    # Beyond the paper (issue 16): measuring, a safer reward, a stay-close term, stopping.
    eval_every: int = 0             # iterations between gold/proxy/quality checks; 0: none
    eval_samples: int = 256         # fixed latents of those checks (and real images at most)
    reward: str = "mean"            # mean: the members' mean; conservative: mean - λ·SD
    reward_lambda: float = 1.0      # λ of the conservative reward
    anchor: float = 0.0             # weight of the distance from the untuned G's output
    anchor_space: str = "pixels"    # pixels, or features of the landscape encoder
    early_stop: str = "off"         # off, record (log the step it would stop at) or stop
    early_stop_patience: int = 2    # checks without a better lower bound before stopping
    objective: Any = None           # the gold objective of the checks; None: no gold
    hidden_objective: bool = False  # the PIR data are a simulated crowd's picks: objective is gold
    # How the estimator steers (pirtune.tuning): a _target_ and its own settings; None or
    # the gradient method is the paper's (every key above is its settings).
    method: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        choices = {"reward": REWARDS, "anchor_space": ANCHOR_SPACES, "early_stop": EARLY_STOP}
        for key, allowed in choices.items():
            value = getattr(self, key)
            if isinstance(value, str) and value not in allowed:
                raise UsageError(f"tune.{key}={value!r} is unknown; choose one of: "
                                 f"{', '.join(allowed)}")
        for key in ("eval_every", "anchor", "reward_lambda"):
            value = getattr(self, key)
            if isinstance(value, int | float) and value < 0:
                raise UsageError(f"tune.{key}={value} must be at least 0")
        if isinstance(self.eval_samples, int) and self.eval_samples <= 5:
            raise UsageError(f"tune.eval_samples={self.eval_samples} must be more than 5 "
                             "(k = 5 nearest neighbours)")
        if self.early_stop != "off" and self.eval_every == 0:
            raise UsageError(f"tune.early_stop={self.early_stop} decides at the checks; set "
                             "tune.eval_every to a positive number of iterations")
        if not isinstance(self.method, str):   # the schema's defaults hold interpolations
            from pirtune.tuning import build_method  # it imports this module's schema

            build_method(self.method).check(None, self.reward)


@dataclass
class EvaluateConfig(Section):
    """Section 4: fresh samples before and after tuning, scored by the true objective."""

    name: ClassVar[str] = "evaluate"
    positive: ClassVar[tuple[str, ...]] = ("num_samples", "batch_size", "bootstrap")
    added: ClassVar[dict[str, Any]] = {"use_objective": True, "bootstrap": 2000,
                                       "interactions": None}
    not_results: ClassVar[tuple[str, ...]] = ("batch_size", "device")

    num_samples: int = 1000         # per set (the paper: 1000)
    seed: int = 1000                # latents: seed for "before", seed + 1 for "after"
    batch_size: int = 250
    alpha: float = 0.001            # Welch's t-test threshold (the paper's)
    device: str = "auto"            # where the generators and objective run: auto|cpu|cuda
    control: bool = True            # score a control objective beside it (specific gain)
    use_objective: bool = True      # false: no true objective (real people's interactions)
    interactions: str | None = None  # data=interactions: the log or export (data.path)
    bootstrap: int = 2000           # resamples of the estimator's predicted change's CI
    objective: Any = MISSING


@dataclass
class QualityConfig(Section):
    """A generator's samples against real images (``pirtune.metrics``), beside the floor."""

    name: ClassVar[str] = "quality"
    positive: ClassVar[tuple[str, ...]] = ("samples", "k", "kid_subsets", "batch_size",
                                           "tilt_ess_floor")
    not_results: ClassVar[tuple[str, ...]] = (*_UNUSED_DATA, "batch_size", "device", "in_loop")

    in_loop: bool = True            # the loop scores its generators (false: a sweep skips it)
    samples: int = 2000             # generated images, and images in each of two real sets
    k: int = 5                      # nearest neighbours of precision/recall, density/coverage
    features: Features = Features.landscape  # the shipped encoder, or inception (torch cache)
    kid_subsets: int = 50
    seed: int = 0                   # the real images drawn, the latents and KID's subsets
    batch_size: int = 250
    device: str = "auto"            # where the generator and features run: auto|cpu|cuda
    generator: str = MISSING        # the bundle stage=quality scores (the loop: its own)
    data: Any = MISSING             # the data group: the real images
    # The tilted real set (pirtune.metrics.tilted): both real sets weighted by the true objective.
    objective: Any = None           # the objective group; None: no tilted real set
    use_objective: bool = True      # false: no true objective (real people's interactions)
    tilt_ess_floor: int = DEFAULT_ESS_FLOOR  # fewest effective real images the tilt may keep

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.k, int) and isinstance(self.samples, int) and self.k >= self.samples:
            raise UsageError(f"quality.k={self.k} nearest neighbours need more samples than "
                             f"quality.samples={self.samples}; raise samples or lower k")


@dataclass
class LoopConfig:
    """The PIR loop: ``iterations`` rounds of collect → estimate → tune → evaluate → quality."""

    iterations: int
    generator: str                  # round 1's start and every round's baseline
    pir_data: str                   # round 1's PIR dataset
    collect: CollectConfig
    estimate: EstimateConfig
    tune: TuneConfig
    evaluate: EvaluateConfig
    quality: QualityConfig

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise UsageError(f"iterations={self.iterations} must be at least 1")


@dataclass
class TrainConfig:
    """The whole tree ``conf/train.yaml`` composes (see the comments there)."""

    stage: str = "loop"
    iterations: int = 1
    round: int = 1
    seed: int = 0
    scale: str = MISSING
    name: str = MISSING
    run_dir: str = MISSING
    generator_ckpt: str = MISSING
    pir_data: str = MISSING
    progress: bool = True
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    data: Any = MISSING
    model: Any = MISSING
    objective: Any = MISSING
    trainer: Any = MISSING
    logger: Any = None

    def __post_init__(self) -> None:
        # Refused here, before collect and estimate: a tuning that cannot run at the end.
        members = self.estimator.members
        if (self.tune.reward == "conservative" and isinstance(members, int) and members < 2
                and self.stage in ("loop", "tune")):
            raise UsageError(f"tune.reward=conservative needs an ensemble, but estimator."
                             f"members={members}; set estimator.members=3 (or more), or "
                             "tune.reward=mean")

    def loop(self) -> LoopConfig:
        """The loop's section: its rounds and the four stages' sections."""
        return LoopConfig(self.iterations, self.generator_ckpt, self.pir_data, self.collect,
                          self.estimate, self.tune, self.evaluate, self.quality)


def register_configs() -> None:
    """Store ``TrainConfig`` as ``pirtune_schema``, the base ``train.yaml`` extends, and
    ``objective/keys``, the base of every objective option."""
    store = ConfigStore.instance()
    store.store(name=SCHEMA_NAME, node=TrainConfig)
    store.store(group="objective", name="keys", node=OBJECTIVE_KEYS)
