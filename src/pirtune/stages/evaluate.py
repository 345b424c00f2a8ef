"""Stage ``evaluate``: the tuned generator against the untuned one on fresh samples (section 4).

ΔPIR, Cohen's d, Welch's t at α = 0.001, the estimator's own predicted
change (introspection, A.1) and, with ``control``, the control objective's
change and the specific gain (``pirtune.objectives.control``) go to
``evaluation.json``, every image's scores to ``evaluation_scores.csv``,
random before/after grids to ``eval_{before,after}.png``; the figures are
logged as ``tune/eval/*`` and the grids as images.

On the web app's picks (``data=interactions``) it writes
``interactions_evaluation.json``: the estimator's pick accuracy (held out, for
a choice model), its own predicted change for the tuned generator with a
bootstrap CI (``model_view``, labelled as the model's view) and, when the
picks came from simulated people with a hidden objective
(``evaluate.use_objective``), the objective's verdict in ``evaluation.json``
as in any loop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch
from torch import nn

from pirtune.data.pir_dataset import read_pir_datasets
from pirtune.errors import UsageError
from pirtune.estimator.choice import FrozenChoiceModel, choice_report, read_choice_rounds
from pirtune.estimator.files import load_estimator
from pirtune.estimator.frozen import to_unit_float
from pirtune.estimator.network import PAPER_BINS
from pirtune.evaluation import (
    EVALUATION_NAME,
    INTERACTIONS_EVALUATION_NAME,
    INTERACTIONS_FORMAT,
    MODEL_VIEW,
    MODEL_VIEW_UNITS,
    Evaluation,
    TrainingSet,
    UnitMap,
    evaluate_generators,
    model_view,
    write_evaluation,
)
from pirtune.files import write_json
from pirtune.models.bundle import load_sampler
from pirtune.objectives import build_objective, score
from pirtune.objectives.control import control_spec
from pirtune.stages.config import EvaluateConfig
from pirtune.stages.rundir import Round, begin_stage
from pirtune.stages.tracking import StageTracker, parameter_counts, track
from pirtune.stages.training import rank_zero

log = logging.getLogger(__name__)


def evaluate(cfg: EvaluateConfig, rnd: Round) -> Path:
    """Write the round's ``evaluation.json`` (unless done); return its path.

    On the web app's picks: ``interactions_evaluation.json`` (and ``evaluation.json``
    with a hidden objective); its path is returned.
    """
    interactions = cfg.interactions is not None
    out = rnd.dir / (INTERACTIONS_EVALUATION_NAME if interactions else EVALUATION_NAME)
    if not rank_zero():  # under DDP, rank 0 evaluates once tuning has ended
        return out
    record = begin_stage("evaluate", rnd.dir,
                         {**cfg.fingerprint(), "before": str(rnd.baseline),
                          "after": str(rnd.tuned)}, out)
    if record is None:
        return out
    if not rnd.tuned.is_file():
        raise UsageError(f"no tuned generator at {rnd.tuned}; run stage=tune first")
    if interactions:
        return _evaluate_interactions(cfg, rnd, record, out)
    objective = build_objective(cfg.objective)
    control = _control(cfg, objective)
    with track(rnd.run, "evaluate", rnd, record) as tracker:
        evaluation = _evaluate(cfg, rnd, objective, tracker, control)
        write_evaluation(evaluation, out)
        tracker.metrics({f"tune/eval/{key}": value for key, value in evaluation.metrics.items()},
                        step=0)
        tracker.images("evaluate/samples", [rnd.dir / evaluation.grids[when]
                                            for when in ("before", "after")],
                       captions=["before tuning", "after tuning"])
    return out


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _control(cfg: EvaluateConfig, objective: nn.Module) -> nn.Module | None:
    """The control objective of ``cfg.objective`` (sharing a VGG objective's network)."""
    spec = control_spec(cfg.objective) if cfg.control else None
    if spec is None:
        return None
    shared = getattr(objective, "bank", None)
    return build_objective({**spec, **({"bank": shared} if shared is not None else {})})


def _evaluate(cfg: EvaluateConfig, rnd: Round, objective: nn.Module,
              tracker: StageTracker, control: nn.Module | None = None) -> Evaluation:
    device = _device(cfg.device)
    estimator = load_estimator(rnd.estimator)
    before, _ = load_sampler(rnd.baseline)
    after, tuned = load_sampler(rnd.tuned)
    tracker.config(parameter_counts(generator=after, estimator=estimator))
    # A choice model has no bins of its own; the data's zero share is on C.3's.
    bins = PAPER_BINS if isinstance(estimator, FrozenChoiceModel) else estimator.bins
    training_set = TrainingSet.of(read_pir_datasets(rnd.datasets), bins)
    provenance = tuned.get("provenance", {})
    evaluation = evaluate_generators(
        before.to(device), after.to(device), objective.to(device), estimator.to(device),
        training_set, rnd.dir,
        record={
            "objective": objective.describe(), "round": rnd.index, "scale": rnd.run.scale,
            "estimator_backbone": (estimator.config or {}).get("backbone", "unknown"),
            "generator_before": str(rnd.baseline), "generator_after": str(rnd.tuned),
            "tuning": {**provenance.get("tuning", {}), "tuned_from": str(rnd.start)},
            "run": rnd.run.name, "seeds": {**rnd.run.seeds, "evaluate": cfg.seed},
        },
        num_samples=cfg.num_samples, seed=cfg.seed, batch_size=cfg.batch_size, alpha=cfg.alpha,
        control=None if control is None else control.to(device),
    )
    change = evaluation.change
    log.info("evaluate: round %d of %s: mean PIR %.4f -> %.4f (Δ %+.4f, estimated %+.4f), "
             "d %.2f, Welch t %.2f (df %.0f), p %.2g: %s at α=%g", rnd.index, objective.name,
             change.mean_before, change.mean_after, change.delta, evaluation.predicted.delta,
             change.cohens_d, change.welch.t, change.welch.df, change.welch.p,
             "significant" if change.significant else "not significant", change.alpha)
    if evaluation.control is not None:
        log.info("evaluate: control %s: Δ %+.4f; specific gain %+.4f of %+.4f",
                 evaluation.control_objective["name"], evaluation.control.delta,
                 evaluation.specific_gain, change.delta)
    return evaluation


def _unit_map(estimator: FrozenChoiceModel, objective: nn.Module, export: Path,
              batch_size: int) -> UnitMap:
    """The choice model's utility in ``objective``'s units, fitted on the judged images."""
    rounds = read_choice_rounds(export)
    judged = to_unit_float(rounds.images[torch.unique(rounds.slots)])
    return UnitMap.fit(score(estimator.utilities, judged, batch_size),
                       score(objective, judged, batch_size))


def _exported(cfg: EvaluateConfig, rnd: Round) -> Round:
    """``rnd`` reading the web app's export: ``data.path`` itself when it is one."""
    source = Path(cfg.interactions)
    folder = source if (source / "pir.csv").is_file() else rnd.pir_data
    if not (folder / "pir.csv").is_file():
        raise UsageError(f"no export of {source} at {folder}; run stage=estimate first")
    return dataclasses.replace(rnd, pir_data=folder, datasets=(folder,))


def _evaluate_interactions(cfg: EvaluateConfig, rnd: Round, record, out: Path) -> Path:
    """Pick accuracy, the estimator's own view and (with a hidden objective) the truth."""
    rnd = _exported(cfg, rnd)
    device = _device(cfg.device)
    estimator = load_estimator(rnd.estimator)
    if isinstance(estimator, FrozenChoiceModel):
        report_file = rnd.dir / "estimator_report.json"
        picks = json.loads(report_file.read_text())
    else:   # a binned estimator learned from every round: its accuracy is not held out
        picks = {"loss": "bins", **dataclasses.asdict(
            choice_report(estimator, read_choice_rounds(rnd.pir_data), held_out=False))}
    before, _ = load_sampler(rnd.baseline)
    after, _ = load_sampler(rnd.tuned)
    objective = build_objective(cfg.objective) if cfg.use_objective else None
    unit_map = (_unit_map(estimator, objective, rnd.pir_data, cfg.batch_size)
                if objective is not None and isinstance(estimator, FrozenChoiceModel) else None)
    with track(rnd.run, "evaluate", rnd, record) as tracker:
        seen = model_view(before.to(device), after.to(device), estimator.to(device),
                          cfg.num_samples, cfg.seed, cfg.batch_size, cfg.bootstrap, rnd.dir,
                          unit_map)
        view = seen.reward
        hidden = None
        if objective is not None:
            evaluation = _evaluate(cfg, rnd, objective, tracker, _control(cfg, objective))
            write_evaluation(evaluation, rnd.dir / EVALUATION_NAME)
            tracker.metrics({f"tune/eval/{key}": value
                             for key, value in evaluation.metrics.items()}, step=0)
            hidden = {"objective": objective.describe(), "evaluation": EVALUATION_NAME,
                      "true_delta": evaluation.change.delta}
            if seen.units is not None:
                hidden["model_view_in_objective_units"] = {
                    "label": MODEL_VIEW_UNITS, **dataclasses.asdict(seen.units),
                    "fit": dataclasses.asdict(seen.unit_map),
                    "ratio_to_true": (seen.units.delta / evaluation.change.delta
                                      if evaluation.change.delta else None)}
        write_json(out, {"format": INTERACTIONS_FORMAT, "run": rnd.run.name, "scale":
                         rnd.run.scale, "generator_before": str(rnd.baseline),
                         "generator_after": str(rnd.tuned), "estimator": picks,
                         "model_view": {"label": MODEL_VIEW, **dataclasses.asdict(view),
                                        "num_samples": cfg.num_samples, "seed": cfg.seed},
                         "hidden_objective": hidden,
                         "grids": {"before": "eval_before.png", "after": "eval_after.png"}})
        tracker.metrics({"tune/eval/pick_accuracy": float(picks["pick_accuracy"]),
                         "tune/eval/model_view_delta": view.delta,
                         "tune/eval/model_view_low": view.low,
                         "tune/eval/model_view_high": view.high}, step=0)
    log.info("evaluate: pick accuracy %.3f (%s); the estimator's own view of the tuned "
             "generator: Δ %+.4f [%+.4f, %+.4f] (%d%% bootstrap CI)", picks["pick_accuracy"],
             "held out" if picks.get("held_out") else "not held out", view.delta, view.low,
             view.high, round(100 * view.level))
    return out
