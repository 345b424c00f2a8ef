"""Stage ``report``: ``report.md`` and the paper's figures from the run's evaluations.

The report itself is ``pirtune.report``; this stage writes it for a run and
logs every figure to W&B. A run on the web app's picks gets
``pirtune.report.interactions``' report.
"""

from __future__ import annotations

from pathlib import Path

from pirtune.evaluation import INTERACTIONS_EVALUATION_NAME
from pirtune.report import FIGURE_DIR, FIGURES, write_report
from pirtune.report.interactions import write_interactions_report
from pirtune.stages.rundir import Run
from pirtune.stages.tracking import track
from pirtune.stages.training import rank_zero


def report(run: Run) -> Path:
    """Write ``<run dir>/report.md`` (again: it follows every evaluation); return its path."""
    path = run.dir / "report.md"
    if not rank_zero():
        return path
    if (run.dir / INTERACTIONS_EVALUATION_NAME).is_file():
        path = write_interactions_report(run.dir)
    else:
        path = write_report(run.dir)
    with track(run, "report") as tracker:
        for number, name in FIGURES.items():
            figure = run.dir / FIGURE_DIR / name
            if figure.is_file():
                tracker.images(f"report/fig{number}", [figure])
        tracker.artifact(path, "report")
    print(f"report written to {path}")
    return path
