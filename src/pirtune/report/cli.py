"""Writing a report: ``write_report``, ``pirtune-report DIR`` and the sweep's Hydra callback."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pirtune.errors import UsageError
from pirtune.evaluation import EVALUATION_NAME
from pirtune.files import write_text
from pirtune.report.entries import (
    attempt,
    find_entries,
    find_quality,
    first_round,
    introspection_fit,
    variability_fit,
)
from pirtune.report.figures import draw_figures, draw_watch_figures
from pirtune.report.markdown import render_markdown

log = logging.getLogger(__name__)

REPORT_NAME = "report.md"
FIGURE_DIR = "report"


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
    watch = draw_watch_figures(entries, root / FIGURE_DIR)
    write_text(path, render_markdown(root, entries, figures, introspection, variability,
                                     find_quality(entries), watch))
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
