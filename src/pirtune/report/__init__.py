"""The report of a run or a sweep: the PIR paper's tables and figures from saved evaluations.

``pirtune-report DIR`` reads every ``evaluation.json`` under DIR (a run
directory, or a sweep directory whose job folders link their runs) and writes
``DIR/report.md`` with figures in ``DIR/report/``, mirroring the paper:
effect sizes by task (Fig. 2), colour samples before and after (Fig. 3),
true vs estimated change (A.1, Fig. 4), change vs initial variability (A.2,
Fig. 5), effect size over iterations (A.3, Fig. 6) and non-zero PIRs vs
effect size (Fig. 8); the specific gain beside a control objective and each
watched tuning's gold and proxy curves (``tune_watch.csv``); and each run's
quality before and after tuning beside the real-vs-real floor, from the
``quality.json`` files beside the evaluations. ``SweepReport`` writes the
report of a Hydra multirun when its last job ends.

The statistics are pure functions returning frozen dataclasses; the figures
and the Markdown are drawn from them and from the evaluations, never from
live modules.
"""

from pirtune.report.cli import FIGURE_DIR, REPORT_NAME, SweepReport, main, write_report
from pirtune.report.entries import (
    Entry,
    RunQuality,
    attempt,
    find_entries,
    find_quality,
    first_round,
    introspection_fit,
    iterated,
    variability_fit,
)
from pirtune.report.figures import FIGURES, draw_figures, draw_watch_figures
from pirtune.report.markdown import HEADINGS, render_markdown

__all__ = ["FIGURES", "FIGURE_DIR", "HEADINGS", "REPORT_NAME", "Entry", "RunQuality",
           "SweepReport", "attempt", "draw_figures", "draw_watch_figures", "find_entries",
           "find_quality", "first_round", "introspection_fit", "iterated", "main",
           "render_markdown", "variability_fit", "write_report"]
