"""Judging a tuned generator (PIR paper, section 4 and A.1–A.2).

``evaluate_generators`` draws fresh samples from the generator before tuning
and from the tuned one (independent latents, the same number of images of
every class), scores both with the true objective and with the round's frozen
estimator, and returns an ``Evaluation``: the true change (Welch's t, Cohen's
d, significance at α = 0.001), the estimator's predicted change on the same
images (introspection, A.1), and the training set's initial mean, SD and
share of zero PIRs (A.2, C.4.2). Given a control objective
(``pirtune.objectives.control``), both sets are scored by it too, and the
*specific gain* is the target's change minus the control's. Every set is also scored by the
three single-colour objectives (``channels``: the share of image energy in red, green and
blue, C.4.3), so a two-colour objective's "trick" of dimming its third colour can be seen
(section 4.2). Every image's scores go beside it in
``evaluation_scores.csv``, so Welch's t can be re-checked without rendering
again. ``write_evaluation``/``load_evaluations`` are the machine-readable file
``evaluation.json`` the report reads.

On the web app's picks with no true objective (``data=interactions``),
``model_view`` is what is left: the estimator's own predicted change on fresh
samples, with a bootstrap CI: what the model believes, not a measurement.
Where simulated people picked with a hidden objective, a ``UnitMap`` fitted on
the judged images turns the choice model's utility into the objective's units,
so its predicted change can be set beside the true one.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.utils import save_image

from pirtune.data.pir_dataset import PIRRecords
from pirtune.estimator.frozen import FrozenPIREstimator, estimate_pir
from pirtune.files import atomic_write, write_json
from pirtune.models.bundle import draw
from pirtune.objectives import score
from pirtune.objectives.colour import CHANNELS, ColourObjective
from pirtune.stats import ALPHA, BootstrapChange, Change, WelchTest, bootstrap_change, mean_change

EVALUATION_FORMAT = "pirtune-evaluation/1"
EVALUATION_NAME = "evaluation.json"
INTERACTIONS_EVALUATION_NAME = "interactions_evaluation.json"
INTERACTIONS_FORMAT = "pirtune-interactions-evaluation/1"
MODEL_VIEW = ("the estimator's own view: the change it predicts for the tuned generator, "
              "not a measurement of what people would pick")
MODEL_VIEW_UNITS = ("the choice model's own view in the hidden objective's units: its "
                    "predicted change, mapped by a line fitted on the judged images; a "
                    "prediction, set beside the measured change")
SCORES_NAME = "evaluation_scores.csv"
GRID_SIZE = 64  # images in each before/after grid (Fig. 3)


def objective_group(objective: dict[str, Any]) -> tuple[str, str]:
    """The (panel, column) an objective is plotted in, as the paper's Fig. 2 groups them.

    Colour objectives form one panel with a column per number of colours; VGG
    objectives a panel per number of filters (single filters, k filters) with a
    column per layer.
    """
    if objective.get("kind") == "colour":
        n = len(objective["colours"])
        return "colour", f"{n} colour{'s' if n > 1 else ''}"
    k = int(objective.get("k") or len(objective.get("filters", [])) or 1)
    return ("VGG single filter" if k == 1 else f"VGG {k} filters"), str(objective["layer"])


@dataclass(frozen=True)
class TrainingSet:
    """The PIR dataset a round's estimator learned from (A.2's controls, C.4.2)."""

    n: int
    mean: float        # initial mean observed PIR
    sd: float          # initial SD of observed PIRs
    zero_share: float  # share of observed PIRs in the first of the estimator's bins

    @classmethod
    def of(cls, records: PIRRecords, bins: int) -> TrainingSet:
        observed = records.observed_pir.double()
        return cls(n=len(records), mean=float(observed.mean()), sd=float(observed.std()),
                   zero_share=records.zero_share(bins))


@dataclass(frozen=True)
class Evaluation:
    """Everything the report needs about one tuning round of one objective.

    Attributes:
        objective: the objective's ``describe()`` (name, kind, layer, weights, ...).
        round: 1 for the first tuning, 2 for the first iteration (A.3), ...
        scale: "cpu" or "paper".
        estimator_backbone: e.g. "small_cnn".
        change: true PIR after vs before tuning.
        predicted: the round's estimator's PIR after vs before, on the same images.
        training_set: the estimator's training set.
        generator_before, generator_after: the two bundles compared.
        grids: before/after sample grids, relative to the evaluation file.
        tuning: the tuning settings (steps, w_pir, lr).
        run: the run's name.
        seeds: the seeds that decided the result (the run's, the evaluation's latents).
        scores: the per-image scores' file, relative to the evaluation file.
        control_objective: the control objective's ``describe()``, or ``None``.
        control: the control objective's PIR after vs before, on the same images.
        channels: by colour (red, green, blue), the single-colour objective's PIR (the
            share of image energy in that colour, C.4.3) after vs before, on the same
            images; ``None`` in files written before it was recorded.
    """

    objective: dict[str, Any]
    round: int
    scale: str
    estimator_backbone: str
    change: Change
    predicted: Change
    training_set: TrainingSet
    generator_before: str
    generator_after: str
    grids: dict[str, str]
    tuning: dict[str, Any]
    run: str = ""
    seeds: dict[str, int] = dataclasses.field(default_factory=dict)
    scores: str | None = None
    control_objective: dict[str, Any] | None = None
    control: Change | None = None
    channels: dict[str, Change] | None = None
    format: str = EVALUATION_FORMAT

    @property
    def specific_gain(self) -> float | None:
        """The target's gain in mean PIR minus the control's; ``None`` without a control."""
        return None if self.control is None else self.change.delta - self.control.delta

    @property
    def metrics(self) -> dict[str, float]:
        """The flat figures logged as ``tune/eval/<key>``."""
        return {
            "delta_pir": self.change.delta,
            "cohens_d": self.change.cohens_d,
            "welch_t": self.change.welch.t,
            "welch_df": self.change.welch.df,
            "welch_p": self.change.welch.p,
            "significant": float(self.change.significant),
            "mean_before": self.change.mean_before,
            "mean_after": self.change.mean_after,
            "predicted_delta": self.predicted.delta,
            "initial_sd": self.training_set.sd,
            "initial_mean": self.training_set.mean,
            "zero_share": self.training_set.zero_share,
            **({} if self.control is None else {"control_delta": self.control.delta,
                                                 "specific_gain": self.specific_gain}),
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        if data.get("format") != EVALUATION_FORMAT:
            raise ValueError(f"not a {EVALUATION_FORMAT} file (format {data.get('format')!r})")

        def change(d: dict[str, Any]) -> Change:
            return Change(**{**d, "welch": WelchTest(**d["welch"])})

        control, channels = data.get("control"), data.get("channels")
        return cls(**{**data, "change": change(data["change"]),
                      "predicted": change(data["predicted"]),
                      "training_set": TrainingSet(**data["training_set"]),
                      "control": None if control is None else change(control),
                      "channels": None if channels is None else
                      {name: change(c) for name, c in channels.items()}})


def write_evaluation(evaluation: Evaluation, path: Path) -> Path:
    """Write ``evaluation`` as JSON, atomically (a crash never leaves half a file)."""
    return write_json(path, evaluation.to_dict())


def load_evaluations(root: str | Path) -> list[tuple[Path, Evaluation]]:
    """Every ``evaluation.json`` under ``root`` (following links), sorted by path."""
    found = []
    for folder, _, files in os.walk(root, followlinks=True):
        if EVALUATION_NAME in files:
            path = Path(folder) / EVALUATION_NAME
            found.append((path, Evaluation.from_dict(json.loads(path.read_text()))))
    return sorted(found, key=lambda item: str(item[0]))


@dataclass(frozen=True)
class Samples:
    """Images drawn for an evaluation and their true and estimated PIRs."""

    images: torch.Tensor     # [N, 3, R, R] in [0, 1]
    labels: torch.Tensor     # [N] classes
    true_pir: torch.Tensor   # [N]
    estimate: torch.Tensor   # [N]
    control_pir: torch.Tensor | None = None  # [N], the control objective's
    channel_pir: torch.Tensor | None = None  # [N, 3], the single-colour PIRs (CHANNELS' order)


def draw_and_score(generator: nn.Module, objective, estimator: FrozenPIREstimator, n: int,
                   seed: int, batch_size: int, control=None) -> Samples:
    """``n`` fresh samples (``draw``), scored both ways (and by the ``control`` objective,
    when given), and by each single-colour objective."""
    images, labels = draw(generator, n, seed, batch_size)
    channels = torch.stack([score(ColourObjective(colour), images, batch_size)
                            for colour in CHANNELS], dim=1)  # 3 × [N] -> [N, 3]
    return Samples(images, labels, score(objective, images, batch_size),
                   estimate_pir(estimator, images, batch_size),
                   None if control is None else score(control, images, batch_size),
                   channels)


def write_scores(sets: dict[str, tuple[int, Samples]], path: Path) -> Path:
    """Every evaluated image's class and scores, one CSV row each.

    Columns: ``set`` (before/after), ``seed`` (the set's seed:
    ``pirtune.models.bundle.draw`` draws its classes and latents from
    ``torch.Generator().manual_seed(seed)``), ``index`` (the image's row in that
    draw), ``class``,
    ``true_pir`` (the objective's score), ``estimated_pir``, and ``control_pir``
    (the control objective's score) when the sets have one.
    """
    controlled = all(samples.control_pir is not None for _, samples in sets.values())
    with atomic_write(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(["set", "seed", "index", "class", "true_pir", "estimated_pir",
                         *(["control_pir"] if controlled else [])])
        for name, (seed, samples) in sets.items():
            control = samples.control_pir.tolist() if controlled else [None] * len(samples.labels)
            for i, (label, true, estimate, other) in enumerate(zip(
                    samples.labels.tolist(), samples.true_pir.tolist(),
                    samples.estimate.tolist(), control, strict=True)):
                writer.writerow([name, seed, i, label, repr(true), repr(estimate),
                                 *([repr(other)] if controlled else [])])
    return path


def evaluate_generators(
    before: nn.Module,
    after: nn.Module,
    objective,
    estimator: FrozenPIREstimator,
    training_set: TrainingSet,
    out_dir: Path,
    record: dict[str, Any],
    num_samples: int = 1000,
    seed: int = 0,
    batch_size: int = 250,
    alpha: float = ALPHA,
    control=None,
) -> Evaluation:
    """Compare ``after`` with ``before`` on fresh samples; save both grids in ``out_dir``.

    The two sets use different latents (seeds ``seed`` and ``seed + 1``), so
    they are independent samples, as Welch's test assumes.

    Args:
        before, after: generators (latents, classes) → images in [-1, 1].
        objective: the true PIR, images in [0, 1] → [B].
        estimator: the frozen estimator the tuning used (introspection).
        training_set: the estimator's training set (initial SD, zero share).
        out_dir: where ``eval_before.png``, ``eval_after.png`` and the per-image
            scores (``write_scores``) go.
        seed: seed of the latents and classes.
        batch_size: images generated and scored at once.
        record: the remaining ``Evaluation`` fields: ``objective`` (its describe()),
            ``round``, ``scale``, ``estimator_backbone``, ``generator_before``,
            ``generator_after``, ``tuning``, ``run`` and ``seeds``.
        num_samples: images per set (paper: 1000).
        control: ``None``, or a control objective (images in [0, 1] → [B], with
            ``describe()``) scoring the same images.
    """
    seeded = {name: (seed + i, draw_and_score(generator, objective, estimator, num_samples,
                                              seed + i, batch_size, control))
              for i, (name, generator) in enumerate((("before", before), ("after", after)))}
    sets = {name: samples for name, (_, samples) in seeded.items()}
    grids = {}
    for name, samples in sets.items():
        grids[name] = f"eval_{name}.png"
        with atomic_write(out_dir / grids[name]) as f:
            save_image(samples.images[:GRID_SIZE], f, format="png", nrow=8, padding=1)
    write_scores(seeded, out_dir / SCORES_NAME)
    return Evaluation(
        change=mean_change(sets["before"].true_pir, sets["after"].true_pir, alpha),
        predicted=mean_change(sets["before"].estimate, sets["after"].estimate, alpha),
        training_set=training_set,
        grids=grids,
        scores=SCORES_NAME,
        control_objective=None if control is None else control.describe(),
        control=(None if control is None else
                 mean_change(sets["before"].control_pir, sets["after"].control_pir, alpha)),
        channels={colour: mean_change(sets["before"].channel_pir[:, i],
                                      sets["after"].channel_pir[:, i], alpha)
                  for i, colour in enumerate(CHANNELS)},
        **record,
    )


@dataclass(frozen=True)
class UnitMap:
    """A choice model's utility in a hidden objective's units: objective ≈ slope·u + intercept.

    Fitted by least squares (``scipy.stats.linregress``) on the images people
    judged, not on the samples it is then used on: the best linear guess of
    the objective given the model's utility, so a selection by utility moves
    the objective by about slope × its move in utility.

    Attributes:
        slope, intercept: the fit.
        r: the correlation of utility and objective on the judged images.
        images: how many judged images it was fitted on.
    """

    slope: float
    intercept: float
    r: float
    images: int

    @classmethod
    def fit(cls, utilities: torch.Tensor, objective: torch.Tensor) -> UnitMap:
        from scipy.stats import linregress

        found = linregress(utilities.double().numpy(), objective.double().numpy())
        return cls(float(found.slope), float(found.intercept), float(found.rvalue),
                   len(utilities))


@dataclass(frozen=True)
class ModelView:
    """What the estimator predicts of the tuned generator: its reward's change, and (given
    a ``UnitMap``) the change in the hidden objective's units it implies."""

    reward: BootstrapChange
    units: BootstrapChange | None = None
    unit_map: UnitMap | None = None


def model_view(before: nn.Module, after: nn.Module, estimator: FrozenPIREstimator,
               num_samples: int, seed: int, batch_size: int, resamples: int,
               out_dir: Path, unit_map: UnitMap | None = None) -> ModelView:
    """The estimator's predicted change from ``before`` to ``after`` on fresh samples.

    Draws ``num_samples`` images from each (balanced classes; seeds ``seed`` and
    ``seed + 1``, as ``evaluate_generators``), scores them with the estimator and
    bootstraps the change in means (``resamples``, 95 %). With ``unit_map``
    (a choice model's utility mapped to a hidden objective), the same images'
    utilities give the predicted change in the objective's units too. Saves the
    sets' grids in ``out_dir`` (``eval_before.png``, ``eval_after.png``).
    """
    estimates, predicted = [], []
    for i, (name, generator) in enumerate((("before", before), ("after", after))):
        images, _ = draw(generator, num_samples, seed + i, batch_size)
        estimates.append(estimate_pir(estimator, images, batch_size))
        if unit_map is not None:
            utilities = score(estimator.utilities, images, batch_size)
            predicted.append(unit_map.slope * utilities + unit_map.intercept)
        with atomic_write(out_dir / f"eval_{name}.png") as f:
            save_image(images[:GRID_SIZE], f, format="png", nrow=8, padding=1)
    reward = bootstrap_change(estimates[0].numpy(), estimates[1].numpy(), resamples, seed=seed)
    units = (bootstrap_change(predicted[0].numpy(), predicted[1].numpy(), resamples, seed=seed)
             if predicted else None)
    return ModelView(reward, units, unit_map)
