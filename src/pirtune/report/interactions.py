"""The report of a loop on the web app's picks (``data=interactions``).

What can be said without a true objective: how well the estimator predicts
held-out picks, what it believes tuning changed (its own view, with a
bootstrap CI), the tuned generator's quality beside the untuned one's; and,
when simulated people picked with a hidden objective, that objective's
verdict (Welch's t, Cohen's d) as in any loop.
"""

from __future__ import annotations

import json
from pathlib import Path

from pirtune.errors import UsageError
from pirtune.evaluation import EVALUATION_NAME, INTERACTIONS_EVALUATION_NAME, Evaluation
from pirtune.files import write_text
from pirtune.metrics.record import BASE_QUALITY_NAME, QUALITY_NAME, read_quality
from pirtune.report.entries import RunQuality
from pirtune.report.markdown import _quality

REPORT_NAME = "report.md"


def _f(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def render_interactions(root: Path, result: dict, hidden: Evaluation | None,
                        quality: RunQuality | None) -> str:
    """The report's Markdown from ``interactions_evaluation.json`` and its neighbours."""
    picks, view = result["estimator"], result["model_view"]
    where = ("held-out sessions" if picks.get("held_out")
             else "the rounds it learned from (nothing held out)")
    lines = [f"# Interactions report: {root.name}", "",
             f"Tuned `{result['generator_before']}` into `{result['generator_after']}` on the "
             "web app's picks.", "",
             "## The estimator on people's picks", "",
             "| estimator | rounds | sessions | pick accuracy | chance | NLL |",
             "|---|---|---|---|---|---|",
             f"| {picks.get('loss', 'choice')} | {picks['rounds']} | {picks['sessions']} | "
             f"{_f(picks['pick_accuracy'])} | {_f(picks['chance'], 2)} | "
             f"{_f(picks['nll']) if picks['nll'] == picks['nll'] else 'n/a'} |", "",
             f"Scored on {where}: the share of rounds whose pick the estimator ranks first "
             "of the four (ties shared).", "",
             *_calibration(picks),
             "## The estimator's own view of the tuned generator", "",
             f"*{view['label']}.*", "",
             f"Mean reward {_f(view['mean_before'], 4)} → {_f(view['mean_after'], 4)}: "
             f"Δ {view['delta']:+.4f}, {round(100 * view['level'])} % bootstrap CI "
             f"[{view['low']:+.4f}, {view['high']:+.4f}] ({view['resamples']} resamples, "
             f"{view['num_samples']} samples each).", "",
             f"![before]({result['grids']['before']}) ![after]({result['grids']['after']})", ""]
    lines += ["## The hidden objective", ""]
    if hidden is None:
        lines.append("None: these picks came from people, whose objective nobody knows. "
                     "Serve the tuned generator (`pirtune-serve --checkpoint "
                     f"{result['generator_after']}`) and compare what they pick.")
    else:
        change = hidden.change
        lines += [f"The simulated people picked by `{hidden.objective['name']}`; it scores "
                  "fresh samples before and after tuning.", "",
                  "| objective | mean before | mean after | Δ | Cohen's d | Welch t | p | "
                  "significant |", "|---|---|---|---|---|---|---|---|",
                  f"| {hidden.objective['name']} | {_f(change.mean_before, 4)} | "
                  f"{_f(change.mean_after, 4)} | {change.delta:+.4f} | {_f(change.cohens_d)} | "
                  f"{_f(change.welch.t, 2)} | {change.welch.p:.2g} | "
                  f"{'yes' if change.significant else 'no'} (α = {change.alpha:g}) |"]
        units = (result.get("hidden_objective") or {}).get("model_view_in_objective_units")
        if units is not None:
            fit = units["fit"]
            lines += ["", f"*{units['label']}.*", "",
                      f"Predicted Δ {units['delta']:+.4f} [{units['low']:+.4f}, "
                      f"{units['high']:+.4f}] against the measured Δ {change.delta:+.4f} "
                      f"(ratio {units['ratio_to_true']:.2f}); the line objective ≈ "
                      f"{fit['slope']:.4f}·u {fit['intercept']:+.4f} was fitted on "
                      f"{fit['images']} judged images, r = {fit['r']:.2f}."]
    lines += ["", "## Quality before and after tuning, beside the real-vs-real floor", "",
              *(_quality([quality]) if quality is not None else
                ["Not scored (`quality.in_loop=false`)."]), ""]
    return "\n".join(lines)


def _calibration(picks: dict) -> list[str]:
    """The choice model's temperature and its pick probabilities' calibration, as lines."""
    found = picks.get("calibration")
    if found is None:
        note = picks.get("calibration_note")
        return [f"Calibration: {note}.", ""] if note else []
    lines = [f"Calibrated on {found['rounds']} held-out rounds: the network's utilities are "
             f"scaled by {found['scale']:.3f}. Expected calibration error of the pick "
             f"probabilities {found['ece_raw']:.3f} as trained, {found['ece']:.3f} calibrated "
             f"(cross-fitted over {found['folds']} groups of people); NLL "
             f"{found['nll_raw']:.3f} → {found['nll']:.3f} (chance 1.386).", "",
             "| predicted pick probability | candidates | mean predicted | share picked |",
             "|---|---:|---:|---:|"]
    lines += [f"| {b['lower']:.1f}–{b['upper']:.1f} | {b['count']} | {b['predicted']:.3f} | "
              f"{b['observed']:.3f} |" for b in found["bins"]]
    return [*lines, ""]


def write_interactions_report(root: str | Path) -> Path:
    """Write ``root/report.md`` for a loop on the web app's picks; return its path."""
    root = Path(root)
    path = root / INTERACTIONS_EVALUATION_NAME
    if not path.is_file():
        raise UsageError(f"no {INTERACTIONS_EVALUATION_NAME} in {root}; run the loop with "
                         "data=interactions first")
    result = json.loads(path.read_text())
    hidden = None
    if result.get("hidden_objective"):
        hidden = Evaluation.from_dict(json.loads((root / EVALUATION_NAME).read_text()))
    after = root / QUALITY_NAME
    before = root / BASE_QUALITY_NAME
    quality = (RunQuality(result["run"], read_quality(before) if before.is_file() else None,
                          {1: read_quality(after)}) if after.is_file() else None)
    return write_text(root / REPORT_NAME, render_interactions(root, result, hidden, quality))
