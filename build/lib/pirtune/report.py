"""The report of a run or a sweep: the PIR paper's tables and figures from saved evaluations.

``pirtune-report DIR`` reads every ``evaluation.json`` under DIR (a run
directory, or a sweep directory whose job folders link their runs) and writes
``DIR/report.md`` with figures in ``DIR/report/``, mirroring the paper:
effect sizes by task (Fig. 2), colour samples before and after (Fig. 3),
true vs estimated change (A.1, Fig. 4), change vs initial variability (A.2,
Fig. 5), effect size over iterations (A.3, Fig. 6) and non-zero PIRs vs
effect size (Fig. 8). ``SweepReport`` writes the report of a Hydra multirun
when its last job ends.

The statistics are pure functions returning frozen dataclasses; the figures
and the Markdown are drawn from them and from the evaluations, never from
live modules.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from omegaconf import DictConfig

from pirtune.errors import UsageError
from pirtune.evaluation import (
    EVALUATION_NAME,
    GRID_SIZE,
    Evaluation,
    load_evaluations,
    objective_group,
)
from pirtune.files import write_text
from pirtune.objectives.vgg import LAYERS
from pirtune.stats import Regression, TooLittleData, ols

log = logging.getLogger(__name__)

REPORT_NAME = "report.md"
FIGURE_DIR = "report"
FADED = 0.3  # the paper's "partially transparent": not significant at α

# Figure files, by the paper's figure number; Fig. 3 embeds the runs' own grids.
FIGURES = {
    "2": "fig2_effect_size.png",
    "4": "fig4_introspection.png",
    "5": "fig5_initial_variability.png",
    "6": "fig6_iterations.png",
    "8": "fig8_nonzero_share.png",
}

HEADINGS = {
    "run": "## What was run",
    "table": "## Table 1: every objective and round",
    "2": "## Fig. 2: effect size per objective",
    "3": "## Fig. 3: colour objectives before and after tuning",
    "4": "## Fig. 4: true vs estimated change in mean PIR (A.1)",
    "5": "## Fig. 5: change in mean PIR vs initial variability (A.2)",
    "6": "## Fig. 6: effect size over iterations (A.3)",
    "8": "## Fig. 8: non-zero PIRs vs effect size",
}


# ---------------------------------------------------------------- evaluations


@dataclass(frozen=True)
class Entry:
    """One evaluation and where it was found.

    Attributes:
        path: its ``evaluation.json`` as found under the report's directory
            (through the sweep's links, so links built from it stay inside).
        evaluation: the file's content.
    """

    path: Path
    evaluation: Evaluation

    @property
    def group(self) -> tuple[str, str]:
        return objective_group(self.evaluation.objective)

    @property
    def name(self) -> str:
        return self.evaluation.objective["name"]


def _natural(text: str) -> list[Any]:
    """Sort key that puts "VGG 3 filters" before "VGG 20 filters"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _panel_key(panel: str) -> tuple[Any, ...]:
    # The paper's order: colour, single VGG filters, then k filters by k.
    return panel != "colour", panel != "VGG single filter", _natural(panel)


def _column_key(column: str) -> tuple[Any, ...]:
    # VGG layers in network order; colour columns by number of colours.
    return LAYERS.index(column) if column in LAYERS else -1, _natural(column)


def _entry_key(entry: Entry) -> tuple[Any, ...]:
    panel, column = entry.group
    return _panel_key(panel), _column_key(column), entry.name, entry.evaluation.round


def find_entries(root: Path) -> list[Entry]:
    """Every evaluation under ``root``, each file once, in the paper's panel/column order.

    Sweep job folders link their run directories, and two jobs may link the
    same run: a file reached twice counts once (under its first path).
    """
    entries: dict[Path, Entry] = {}
    for path, evaluation in load_evaluations(root):
        entries.setdefault(path.resolve(), Entry(path, evaluation))
    return sorted(entries.values(), key=_entry_key)


def first_round(entries: Sequence[Entry]) -> list[Entry]:
    """The first tuning of each objective: Figs. 2, 4, 5 and 8 show these, as the paper does."""
    return [entry for entry in entries if entry.evaluation.round == 1]


def _objective_key(entry: Entry) -> tuple[str, str, str, str]:
    """What makes two evaluations rounds of the same objective."""
    e = entry.evaluation
    return e.objective["name"], e.scale, e.estimator_backbone, str(e.objective.get("weights", ""))


def iterated(entries: Sequence[Entry]) -> dict[str, list[Entry]]:
    """Objectives evaluated in more than one round (A.3), each with its rounds in order.

    Keys are the objective names, with scale, backbone and VGG weights added
    when those differ between the iterated objectives.
    """
    by_objective: dict[tuple[str, str, str, str], list[Entry]] = {}
    for entry in entries:
        by_objective.setdefault(_objective_key(entry), []).append(entry)
    lines = {key: sorted(group, key=lambda entry: entry.evaluation.round)
             for key, group in by_objective.items()
             if len({entry.evaluation.round for entry in group}) > 1}
    varied = len({key[1:] for key in lines}) > 1
    return {f"{name} ({', '.join(part for part in rest if part)})" if varied else name: group
            for (name, *rest), group in lines.items()}


# ------------------------------------------------------ regressions (A.1, A.2)


def introspection_fit(entries: Sequence[Entry]) -> Regression:
    """A.1: true change in mean PIR regressed on the estimator's predicted change (β = 1.67)."""
    return ols([e.evaluation.change.delta for e in entries],
               {"predicted_delta": [e.evaluation.predicted.delta for e in entries]})


def variability_fit(entries: Sequence[Entry]) -> Regression:
    """A.2: change in mean PIR on initial SD, controlling for initial mean and zero share."""
    sets = [e.evaluation.training_set for e in entries]
    return ols([e.evaluation.change.delta for e in entries],
               {"initial_sd": [s.sd for s in sets], "initial_mean": [s.mean for s in sets],
                "zero_share": [s.zero_share for s in sets]})


def attempt(fit: Callable[[Sequence[Entry]], Regression],
            entries: Sequence[Entry]) -> Regression | str:
    """The regression, or the sentence that says why there is none."""
    try:
        return fit(entries)
    except TooLittleData as err:
        return str(err)


# -------------------------------------------------------------------- figures


def _alphas(entries: Sequence[Entry]) -> list[float]:
    return [1.0 if entry.evaluation.change.significant else FADED for entry in entries]


def _by_group(entries: Sequence[Entry]) -> dict[str, dict[str, list[Entry]]]:
    """Entries by panel, then by column, in the order ``find_entries`` sorted them."""
    panels: dict[str, dict[str, list[Entry]]] = {}
    for entry in sorted(entries, key=_entry_key):
        panel, column = entry.group
        panels.setdefault(panel, {}).setdefault(column, []).append(entry)
    return panels


def _scatter_by_panel(ax: Axes, entries: Sequence[Entry],
                      x: Callable[[Evaluation], float], y: Callable[[Evaluation], float]) -> None:
    """One colour per panel; non-significant points faded."""
    for i, (panel, columns) in enumerate(_by_group(entries).items()):
        group = [entry for column in columns.values() for entry in column]
        ax.scatter([x(e.evaluation) for e in group], [y(e.evaluation) for e in group],
                   color=f"C{i % 10}", alpha=_alphas(group), label=panel)
    ax.legend(fontsize="small")


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def plot_effect_sizes(entries: Sequence[Entry], path: Path) -> Path:
    """Fig. 2: Cohen's d per objective, a subplot per panel, jittered within columns."""
    panels = _by_group(entries)
    # Figure without pyplot: the Agg canvas, no display and no global state.
    fig = Figure(figsize=(1.5 + 3.0 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    jitter = np.random.default_rng(0)  # the same report every time
    for ax, (panel, columns) in zip(axes, panels.items(), strict=True):
        for i, group in enumerate(columns.values()):
            ax.scatter(i + jitter.uniform(-0.15, 0.15, len(group)),
                       [e.evaluation.change.cohens_d for e in group],
                       color=f"C{i % 10}", alpha=_alphas(group))
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(columns)), list(columns), rotation=30)
        ax.set_xlim(-0.6, len(columns) - 0.4)
        ax.set_title(panel)
    axes[0].set_ylabel("effect size (Cohen's d)")
    return _save(fig, path)


def plot_introspection(entries: Sequence[Entry], fit: Regression | None, path: Path) -> Path:
    """Fig. 4: true vs estimated change in mean PIR, identity line and OLS line."""
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.subplots()
    values = [v for e in entries for v in (e.evaluation.change.delta, e.evaluation.predicted.delta)]
    ends = np.array([min(values), max(values)])
    ax.plot(ends, ends, color="grey", linestyle="--", linewidth=0.8, label="identity")
    if fit is not None:
        b0, b1 = fit.coefficients["intercept"].beta, fit.coefficients["predicted_delta"].beta
        ax.plot(ends, b0 + b1 * ends, color="black", linewidth=1, label=f"OLS, β = {b1:.2f}")
    _scatter_by_panel(ax, entries, lambda e: e.predicted.delta, lambda e: e.change.delta)
    ax.set_xlabel("estimated change in mean PIR")
    ax.set_ylabel("change in mean PIR")
    return _save(fig, path)


def plot_variability(entries: Sequence[Entry], path: Path) -> Path:
    """Fig. 5: change in mean PIR vs the training set's SD."""
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.subplots()
    _scatter_by_panel(ax, entries, lambda e: e.training_set.sd, lambda e: e.change.delta)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("initial SD of PIR (training set)")
    ax.set_ylabel("change in mean PIR")
    return _save(fig, path)


def plot_iterations(paths: dict[str, list[Entry]], path: Path) -> Path:
    """Fig. 6: Cohen's d against round, a line per iterated objective."""
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, (label, group) in enumerate(paths.items()):
        rounds = [e.evaluation.round for e in group]
        d = [e.evaluation.change.cohens_d for e in group]
        ax.plot(rounds, d, color=f"C{i % 10}", linewidth=1, label=label)
        ax.scatter(rounds, d, color=f"C{i % 10}", alpha=_alphas(group))
    ax.axhline(0, color="grey", linewidth=0.8)
    rounds = sorted({e.evaluation.round for group in paths.values() for e in group})
    ax.set_xticks(rounds)
    ax.set_xlabel("round (tuning iteration)")
    ax.set_ylabel("effect size (Cohen's d)")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_nonzero_share(entries: Sequence[Entry], path: Path) -> Path:
    """Fig. 8: share of non-zero PIRs in the training set vs effect size."""
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.subplots()
    _scatter_by_panel(ax, entries, lambda e: e.change.cohens_d,
                      lambda e: 1 - e.training_set.zero_share)
    ax.set_xlabel("effect size (Cohen's d)")
    ax.set_ylabel("share of non-zero PIRs (training set)")
    ax.set_ylim(-0.05, 1.05)
    return _save(fig, path)


def draw_figures(entries: Sequence[Entry], introspection: Regression | str,
                 out_dir: Path) -> dict[str, Path]:
    """Every figure the data allow, by figure number; figures it no longer allows are removed."""
    first = first_round(entries)
    paths = iterated(entries)
    out_dir.mkdir(parents=True, exist_ok=True)
    draw: dict[str, Callable[[Path], Path]] = {}
    if first:
        fit = introspection if isinstance(introspection, Regression) else None
        draw |= {"2": lambda p: plot_effect_sizes(first, p),
                 "4": lambda p: plot_introspection(first, fit, p),
                 "5": lambda p: plot_variability(first, p),
                 "8": lambda p: plot_nonzero_share(first, p)}
    if paths:
        draw["6"] = lambda p: plot_iterations(paths, p)
    for number, name in FIGURES.items():
        if number not in draw:
            (out_dir / name).unlink(missing_ok=True)  # a stale figure would contradict the text
    return {number: plot(out_dir / FIGURES[number]) for number, plot in draw.items()}


# ------------------------------------------------------------------- Markdown


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    # Below the smallest double, scipy's p underflows to exactly 0.
    return "< 1e-300" if value == 0 else f"{value:.2e}"


def _link(root: Path, path: Path) -> str:
    """``path`` relative to ``root``, as a Markdown link target."""
    return urllib.parse.quote(Path(os.path.relpath(path, root)).as_posix())


def _distinct(values) -> list[Any]:
    return sorted(set(values))


def _header(entries: Sequence[Entry]) -> list[str]:
    evaluations = [entry.evaluation for entry in entries]
    scale_words = {"cpu": "CPU-sized (`scale=cpu`)", "paper": "paper-sized (`scale=paper`)"}
    weights = _distinct(e.objective.get("weights") for e in evaluations
                        if e.objective.get("kind") == "vgg")
    weight_words = {"imagenet": "ImageNet", "random": "random (untrained)"}
    sizes = _distinct(e.objective.get("input_size") for e in evaluations
                      if e.objective.get("kind") == "vgg")
    rounds = _distinct(e.round for e in evaluations)
    objectives = {_objective_key(entry) for entry in entries}
    tuning = {key: _distinct(str(e.tuning[key]) for e in evaluations if key in e.tuning)
              for key in _distinct(k for e in evaluations for k in e.tuning)}
    scales = _distinct(e.scale for e in evaluations)
    lines = [
        f"- Scale: {', '.join(scale_words.get(s, s) for s in scales)}",
        "- Estimator backbone: "
        + ", ".join(f"`{b}`" for b in _distinct(e.estimator_backbone for e in evaluations)),
        "- VGG weights: " + (" and ".join(weight_words.get(w, str(w)) for w in weights)
                             if weights else "no VGG objectives"),
        *([f"- VGG input size: {' / '.join(f'{size} px' for size in sizes)}"] if sizes else []),
        f"- {len(objectives)} objective{'s' if len(objectives) != 1 else ''}, "
        f"round{'s' if len(rounds) != 1 else ''} {', '.join(map(str, rounds))}: "
        f"{len(evaluations)} evaluation{'s' if len(evaluations) != 1 else ''}",
        "- Significance: Welch's t-test at α = "
        + ", ".join(f"{a:g}" for a in _distinct(e.change.alpha for e in evaluations))
        + "; effect size: Cohen's d",
    ]
    if tuning:
        lines.append("- Tuning: " + ", ".join(f"{key}={' / '.join(values)}"
                                             for key, values in tuning.items()))
    return lines


def _table(entries: Sequence[Entry]) -> list[str]:
    lines = ["| objective | panel / column | round | ΔPIR | Cohen's d | Welch t | df | p "
             "| significant | predicted Δ | initial SD | zero share |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for entry in entries:
        e, c = entry.evaluation, entry.evaluation.change
        lines.append(
            f"| {entry.name} | {' / '.join(entry.group)} | {e.round} | {_number(c.delta, 4)} "
            f"| {_number(c.cohens_d)} | {_number(c.welch.t, 2)} | {_number(c.welch.df, 1)} "
            f"| {_p(c.welch.p)} | {'yes' if c.significant else 'no'} "
            f"| {_number(e.predicted.delta, 4)} | {_number(e.training_set.sd, 4)} "
            f"| {_number(e.training_set.zero_share)} |")
    return lines


def _coefficient_table(fit: Regression) -> list[str]:
    return ["| term | β | t | p |", "|---|---:|---:|---:|",
            *(f"| {name} | {_number(c.beta, 4)} | {_number(c.t, 2)} | {_p(c.p)} |"
              for name, c in fit.coefficients.items())]


def _grids(root: Path, entries: Sequence[Entry]) -> list[str]:
    colour = [entry for entry in entries if entry.evaluation.objective.get("kind") == "colour"]
    if not colour:
        return ["No colour objectives were evaluated; Fig. 3 shows colour objectives only."]
    lines = ["| objective | round | before | after |", "|---|---:|---|---|"]
    for entry in colour:
        cells = []
        for when in ("before", "after"):
            grid = entry.path.parent / entry.evaluation.grids.get(when, "")
            cells.append(f"![{entry.name} {when}]({_link(root, grid)})" if grid.is_file()
                         else f"(no {when} grid)")
        lines.append(f"| {entry.name} | {entry.evaluation.round} | {' | '.join(cells)} |")
    return [f"Samples are drawn at random, not picked; up to {GRID_SIZE} per grid.", "", *lines]


def _figure(root: Path, figures: dict[str, Path], number: str, caption: str) -> str:
    return f"![Fig. {number}: {caption}]({_link(root, figures[number])})"


def render_markdown(root: Path, entries: Sequence[Entry], figures: dict[str, Path],
                    introspection: Regression | str, variability: Regression | str) -> str:
    """The report's Markdown: every section always, a sentence where data are too few.

    Args:
        root: the directory ``report.md`` goes in; links are relative to it.
        entries: every evaluation (``find_entries``).
        figures: the figures ``draw_figures`` drew, by figure number.
        introspection, variability: the A.1 and A.2 regressions, or why there are none.
    """
    first = first_round(entries)
    no_first = ("No round-1 evaluation was found; this figure shows the first tuning "
                "of each objective.")
    out = [f"# PIR report: {root.name}", "", HEADINGS["run"], "", *_header(entries), "",
           HEADINGS["table"], "", *_table(entries), "",
           HEADINGS["2"], ""]
    out += ([_figure(root, figures, "2", "effect size per objective"), "",
             f"Round 1, {len(first)} objectives; faded points are not significant at α."]
            if "2" in figures else [no_first])
    out += ["", HEADINGS["3"], "", *_grids(root, entries), "", HEADINGS["4"], ""]
    if "4" in figures:
        out += [_figure(root, figures, "4", "true vs estimated change"), ""]
        if isinstance(introspection, Regression):
            slope = introspection.coefficients["predicted_delta"]
            out.append(f"OLS of the true change on the estimated change (round 1, "
                       f"n = {introspection.n}, R² = {_number(introspection.r2)}): "
                       f"β = {_number(slope.beta)}, t = {_number(slope.t, 2)}, "
                       f"p = {_p(slope.p)}. The paper finds β = 1.67; β > 1 means the estimator "
                       "underestimates the improvement.")
        else:
            out.append(introspection)
    else:
        out.append(no_first)
    out += ["", HEADINGS["5"], ""]
    if "5" in figures:
        out += [_figure(root, figures, "5", "change in mean PIR vs initial SD"), ""]
        if isinstance(variability, Regression):
            out += [f"OLS `delta ~ initial_sd + initial_mean + zero_share` (round 1, "
                    f"n = {variability.n}, R² = {_number(variability.r2)}); the paper finds "
                    "β = 0.99, t = 10.6 for initial SD.", "", *_coefficient_table(variability)]
        else:
            out.append(variability)
    else:
        out.append(no_first)
    out += ["", HEADINGS["6"], ""]
    out.append(_figure(root, figures, "6", "effect size over iterations") if "6" in figures
               else "No objective was tuned more than once; run the loop with `iterations=2` "
                    "to produce this figure.")
    out += ["", HEADINGS["8"], ""]
    out.append(_figure(root, figures, "8", "share of non-zero PIRs vs effect size")
               if "8" in figures else no_first)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- entry points


def write_report(root: str | Path) -> Path:
    """Write ``root/report.md`` and ``root/report/*.png`` from the evaluations under ``root``.

    Raises:
        UsageError: ``root`` is not a directory or holds no evaluation; nothing
            is written then.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"directory '{root}' does not exist; pass a run directory "
                         "(runs/<scale>-<objective>) or a sweep directory (runs/multirun/<time>)")
    try:
        entries = find_entries(root)
    except ValueError as err:
        raise UsageError(f"an {EVALUATION_NAME} under '{root}' cannot be read: {err}; "
                         "re-run the tuning that wrote it") from err
    if not entries:
        raise UsageError(f"no {EVALUATION_NAME} under '{root}'; pass a run or sweep directory "
                         "whose tuning has finished (tuning writes the evaluation)")
    first = first_round(entries)
    introspection = attempt(introspection_fit, first)
    variability = attempt(variability_fit, first)
    figures = draw_figures(entries, introspection, root / FIGURE_DIR)
    path = root / REPORT_NAME
    write_text(path, render_markdown(root, entries, figures, introspection, variability))
    return path


class SweepReport(Callback):
    """Hydra callback: one report for the whole sweep when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            path = write_report(config.hydra.sweep.dir)
        except UsageError as err:
            # A sweep of stages that evaluate nothing is no failure of the sweep.
            log.warning("no sweep report: %s", err)
            return
        log.info("sweep report: %s", path)


def main(argv: list[str] | None = None) -> None:
    """Console script ``pirtune-report DIR``.

    Args:
        argv: arguments without the program name; ``None`` reads ``sys.argv``.
    """
    parser = argparse.ArgumentParser(
        prog="pirtune-report",
        description=f"Write DIR/{REPORT_NAME} and DIR/{FIGURE_DIR}/*.png from every "
                    f"{EVALUATION_NAME} under DIR (a run or a sweep directory).")
    parser.add_argument("dir", type=Path, metavar="DIR", help="run or sweep directory")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.dir)
    except UsageError as err:
        print(f"pirtune-report: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(path)


if __name__ == "__main__":
    main()
