"""The evaluations a report covers, in the paper's order, and its regressions (A.1, A.2)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pirtune.evaluation import (
    Evaluation,
    load_evaluations,
    objective_group,
)
from pirtune.metrics.record import BASE_QUALITY_NAME, QUALITY_NAME, QualityRecord, read_quality
from pirtune.objectives.vgg import LAYERS
from pirtune.stats import Regression, TooLittleData, ols


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


def entry_key(entry: Entry) -> tuple[Any, ...]:
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
    return sorted(entries.values(), key=entry_key)


def first_round(entries: Sequence[Entry]) -> list[Entry]:
    """The first tuning of each objective: Figs. 2, 4, 5 and 8 show these, as the paper does."""
    return [entry for entry in entries if entry.evaluation.round == 1]


def objective_key(entry: Entry) -> tuple[str, str, str, str]:
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
        by_objective.setdefault(objective_key(entry), []).append(entry)
    lines = {key: sorted(group, key=lambda entry: entry.evaluation.round)
             for key, group in by_objective.items()
             if len({entry.evaluation.round for entry in group}) > 1}
    varied = len({key[1:] for key in lines}) > 1
    return {f"{name} ({', '.join(part for part in rest if part)})" if varied else name: group
            for (name, *rest), group in lines.items()}


@dataclass(frozen=True)
class RunQuality:
    """The quality records of one run: before tuning and after each round's tuning.

    Attributes:
        run: the run's name (or its folder's).
        before: the generator before tuning (``quality_base.json``), if scored.
        after: by round, the tuned generator's record (the round's ``quality.json``).
    """

    run: str
    before: QualityRecord | None
    after: dict[int, QualityRecord]

    @property
    def records(self) -> list[QualityRecord]:
        return [r for r in (self.before, *self.after.values()) if r is not None]


def find_quality(entries: Sequence[Entry]) -> list[RunQuality]:
    """The quality records beside the evaluations, run by run (runs without any left out).

    Round 1 lives in the run directory and round r in its ``round<r>/``, so an
    evaluation's run directory is its folder or that folder's parent.
    """
    runs: dict[Path, tuple[str, Path, dict[int, Path]]] = {}
    for entry in entries:
        folder, index = entry.path.parent, entry.evaluation.round
        run_dir = folder if index == 1 else folder.parent
        name = entry.evaluation.run or run_dir.name
        _, _, rounds = runs.setdefault(run_dir.resolve(), (name, run_dir, {}))
        rounds[index] = folder / QUALITY_NAME
    found = []
    for name, run_dir, rounds in runs.values():
        base = run_dir / BASE_QUALITY_NAME
        after = {index: read_quality(path) for index, path in sorted(rounds.items())
                 if path.is_file()}
        before = read_quality(base) if base.is_file() else None
        if before is not None or after:
            found.append(RunQuality(name, before, after))
    return found


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


