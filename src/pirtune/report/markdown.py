"""The report's Markdown: the run's header, Table 1, and every figure with its caption."""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pirtune.evaluation import GRID_SIZE
from pirtune.metrics import figure_table
from pirtune.report.claims import claims_markdown, judge
from pirtune.report.entries import Entry, RunQuality, first_round, objective_key
from pirtune.stats import Regression

HEADINGS = {
    "run": "## What was run",
    "table": "## Table 1: every objective and round",
    "quality": "## Quality before and after tuning, beside the real-vs-real floor",
    "2": "## Fig. 2: effect size per objective",
    "3": "## Fig. 3: colour objectives before and after tuning",
    "4": "## Fig. 4: true vs estimated change in mean PIR (A.1)",
    "5": "## Fig. 5: change in mean PIR vs initial variability (A.2)",
    "6": "## Fig. 6: effect size over iterations (A.3)",
    "8": "## Fig. 8: non-zero PIRs vs effect size",
    "specificity": "## Specificity: the gain beside a control objective's",
    "watch": "## Gold vs proxy during tuning",
    "claims": "## Claims: does the paper reproduce?",
}


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
    objectives = {objective_key(entry) for entry in entries}
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
    seeds = {key: _distinct(str(e.seeds[key]) for e in evaluations if key in e.seeds)
             for key in _distinct(k for e in evaluations for k in e.seeds)}
    lines.append("- Seeds: " + ("; ".join(f"{key} {', '.join(values)}"
                                          for key, values in seeds.items())
                                if seeds else "not recorded"))
    if tuning:
        lines.append("- Tuning: " + ", ".join(f"{key}={' / '.join(values)}"
                                             for key, values in tuning.items()))
    return lines


def _table(entries: Sequence[Entry]) -> list[str]:
    lines = ["| objective | panel / column | round | ΔPIR | Cohen's d | Welch t | df | p "
             "| significant | predicted Δ | initial SD | zero share | run |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for entry in entries:
        e, c = entry.evaluation, entry.evaluation.change
        lines.append(
            f"| {entry.name} | {' / '.join(entry.group)} | {e.round} | {_number(c.delta, 4)} "
            f"| {_number(c.cohens_d)} | {_number(c.welch.t, 2)} | {_number(c.welch.df, 1)} "
            f"| {_p(c.welch.p)} | {'yes' if c.significant else 'no'} "
            f"| {_number(e.predicted.delta, 4)} | {_number(e.training_set.sd, 4)} "
            f"| {_number(e.training_set.zero_share)} | {e.run or 'n/a'} |")
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


def _quality(runs: Sequence[RunQuality]) -> list[str]:
    if not runs:
        return ["No quality.json was found beside the evaluations; the loop scores its "
                "generator before tuning and after each round (`pirtune-train stage=quality` "
                "scores any generator)."]
    lines = ["Each generator's samples and a second real set (the floor: what a generator "
             "that draws the real distribution scores) against the same real images "
             "(`pirtune.metrics`). KID is ×10³; class accuracy is the share of samples of a "
             "class that the landscape encoder reads as that class."]
    for run in runs:
        first = run.records[0]
        columns = {**({"before tuning": run.before.generated} if run.before else {}),
                   **{f"after round {index}": r.generated for index, r in run.after.items()},
                   "real-vs-real floor": first.floor}
        lines += ["", f"**{run.run}**: {first.samples['generated']} samples against "
                      f"{first.samples['real']} real images, {first.features['name']} features "
                      f"({first.features['dim']}), k = {first.settings.get('k', 'n/a')}.", "",
                  *figure_table(columns, first.classes), "", *_tilted(run)]
    return lines


def _tilted(run: RunQuality) -> list[str]:
    """Realism and the distance to the real data tilted to the same gain, per generator."""
    records = {**({"before tuning": run.before} if run.before else {}),
               **{f"after round {index}": r for index, r in run.after.items()}}
    lines = ["Realism (precision against the real scenes) beside the distance to the real "
             "scenes tilted by the true objective to the same mean PIR (p ∝ p_real·exp(β·PIR), "
             "`pirtune.metrics.tilted`; ESS: its effective number of real images). A real "
             "gain moves a generator away from the untilted real set; it should not move it "
             "away from the tilted one.", "",
             "| generator | mean true PIR | precision | FID vs tilted | precision vs tilted "
             "| recall vs tilted | β | ESS |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for name, record in records.items():
        t = record.tilted
        if t is None:
            lines.append(f"| {name} | n/a | {_number(record.generated.precision)} | n/a | n/a "
                         "| n/a | n/a | n/a |")
            notes.append(f"{name}: {record.tilted_note or 'not scored'}")
            continue
        lines.append(f"| {name} | {_number(t.generated_pir)} | "
                     f"{_number(record.generated.precision)} | {_number(t.fid)} | "
                     f"{_number(t.precision)} | {_number(t.recall)} | {_number(t.beta, 2)} | "
                     f"{t.ess:.0f} |")
    return lines + (["", *(f"- {note}" for note in notes)] if notes else [])


def _specificity(entries: Sequence[Entry]) -> list[str]:
    controlled = [entry for entry in entries if entry.evaluation.control is not None]
    if not controlled:
        return ["No evaluation scored a control objective (`evaluate.control=true` scores the "
                "mirrored split of a colour split, or another filter of a VGG layer; a single "
                "colour has none)."]
    lines = ["The control objective is scored on the same images as the target: a gain it "
             "shares (a global colour cast) is not specific. Specific gain = ΔPIR of the "
             "target − ΔPIR of the control.", "",
             "| objective | round | ΔPIR | Cohen's d | control | control ΔPIR | specific gain "
             "| specific share | run |",
             "|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for entry in controlled:
        e = entry.evaluation
        share = e.specific_gain / e.change.delta if e.change.delta else math.nan
        lines.append(f"| {entry.name} | {e.round} | {_number(e.change.delta, 4)} "
                     f"| {_number(e.change.cohens_d)} | {e.control_objective['name']} "
                     f"| {_number(e.control.delta, 4)} | {_number(e.specific_gain, 4)} "
                     f"| {_number(share, 2)} | {e.run or 'n/a'} |")
    return lines


def _watch(root: Path, watch: dict[str, Path]) -> list[str]:
    if not watch:
        return ["No tuning was watched (`tune.eval_every` > 0 writes each round's "
                "`tune_watch.csv`: the estimator's PIR (proxy) and the objective's (gold), "
                "quality and the distance from the untuned samples on fixed latents)."]
    lines = ["On fixed latents during tuning: the estimator's mean PIR (proxy) and the "
             "objective's (gold), against iterations and against the samples' RMS distance "
             "from the untuned generator's (Gao et al. 2023), and FID and recall against "
             "iterations. Where proxy rises and gold does not, the estimator is being "
             "over-optimised."]
    for name, path in watch.items():
        lines += ["", f"![tuning watch: {name}]({_link(root, path)})"]
    return lines


def _figure(root: Path, figures: dict[str, Path], number: str, caption: str) -> str:
    return f"![Fig. {number}: {caption}]({_link(root, figures[number])})"


def render_markdown(root: Path, entries: Sequence[Entry], figures: dict[str, Path],
                    introspection: Regression | str, variability: Regression | str,
                    quality: Sequence[RunQuality] = (),
                    watch: dict[str, Path] | None = None) -> str:
    """The report's Markdown: every section always, a sentence where data are too few.

    Args:
        root: the directory ``report.md`` goes in; links are relative to it.
        entries: every evaluation (``find_entries``).
        figures: the figures ``draw_figures`` drew, by figure number.
        introspection, variability: the A.1 and A.2 regressions, or why there are none.
        quality: each run's quality records (``find_quality``).
        watch: the tuning-watch figures (``draw_watch_figures``), by label.
    """
    first = first_round(entries)
    no_first = ("No round-1 evaluation was found; this figure shows the first tuning "
                "of each objective.")
    out = [f"# PIR report: {root.name}", "", HEADINGS["run"], "", *_header(entries), "",
           HEADINGS["table"], "", *_table(entries), "",
           HEADINGS["quality"], "", *_quality(quality), "",
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
    out += ["", HEADINGS["specificity"], "", *_specificity(entries),
            "", HEADINGS["watch"], "", *_watch(root, watch or {}),
            "", HEADINGS["claims"], "", *claims_markdown(judge(entries))]
    return "\n".join(out) + "\n"


