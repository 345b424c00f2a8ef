"""The report's figures (the paper's Figs. 2, 4, 5, 6 and 8), drawn from saved evaluations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pirtune.evaluation import Evaluation
from pirtune.models.watch import WATCH_NAME, read_watch
from pirtune.report.entries import Entry, entry_key, first_round, iterated
from pirtune.stats import Regression

FADED = 0.3  # the paper's "partially transparent": not significant at α

# Figure files, by the paper's figure number; Fig. 3 embeds the runs' own grids.
FIGURES = {
    "2": "fig2_effect_size.png",
    "4": "fig4_introspection.png",
    "5": "fig5_initial_variability.png",
    "6": "fig6_iterations.png",
    "8": "fig8_nonzero_share.png",
}


def _alphas(entries: Sequence[Entry]) -> list[float]:
    return [1.0 if entry.evaluation.change.significant else FADED for entry in entries]


def _by_group(entries: Sequence[Entry]) -> dict[str, dict[str, list[Entry]]]:
    """Entries by panel, then by column, in the order ``find_entries`` sorted them."""
    panels: dict[str, dict[str, list[Entry]]] = {}
    for entry in sorted(entries, key=entry_key):
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


WATCH_PREFIX = "watch_"  # a figure per watched round: watch_<nn>_<run folder>_<objective>_r<round>


def plot_watch(rows: Sequence[dict[str, float]], title: str, path: Path) -> Path:
    """Proxy and gold PIR against iterations and against distance; FID and recall against
    iterations (one watched tuning: the rows of its ``tune_watch.csv``)."""
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    by_step, by_distance, quality = fig.subplots(1, 3)
    steps = [row["iteration"] for row in rows]
    distance = [row["distance"] for row in rows]
    for key, label, colour in (("proxy_pir", "proxy (estimator)", "C0"),
                               ("proxy_lower", "proxy lower bound (mean − λ·SD)", "C2"),
                               ("gold_pir", "gold (objective)", "C3")):
        if all(key in row for row in rows):
            values = [row[key] for row in rows]
            by_step.plot(steps, values, marker="o", color=colour, label=label)
            by_distance.plot(distance, values, marker="o", color=colour, label=label)
    by_step.set_xlabel("iteration")
    by_distance.set_xlabel("RMS distance from the untuned samples")
    for ax in (by_step, by_distance):
        ax.set_ylabel("mean PIR")
        ax.legend(fontsize="small")
    quality.plot(steps, [row["fid"] for row in rows], marker="o", color="C1", label="FID")
    quality.set_xlabel("iteration")
    quality.set_ylabel("FID", color="C1")
    recall = quality.twinx()
    recall.plot(steps, [row["recall"] for row in rows], marker="s", color="C4", label="recall")
    recall.set_ylabel("recall", color="C4")
    recall.set_ylim(-0.05, 1.05)
    fig.suptitle(title)
    return _save(fig, path)


def latent_grid(bundle: str | Path, n: int = 16, seed: int = 0) -> torch.Tensor:
    """A square grid [3, H, W] in [0, 1] of ``bundle``'s generator on ``draw(…, n, seed)``.

    Every bundle of the same shape draws the same (z, c) for the same seed, so grids
    of a generator before and after tuning show what tuning did to each scene.
    """
    from torchvision.utils import make_grid

    from pirtune.models.bundle import draw, load_sampler

    images, _ = draw(load_sampler(bundle)[0], n, seed)
    return make_grid(images, nrow=max(1, round(n ** 0.5)), padding=1, pad_value=1.0)


def same_latents(panels: Sequence[tuple[str | Path, str]], path: Path, n: int = 16,
                 seed: int = 0) -> Path:
    """Generators side by side on the same ``n`` latents and classes (``latent_grid``),
    one titled panel each; ``panels`` are (generator bundle, title) pairs."""
    fig = Figure(figsize=(2.9 * len(panels), 3.5), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (bundle, title) in zip(axes, panels, strict=True):
        ax.imshow(latent_grid(bundle, n, seed).permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    return _save(fig, path)


def draw_watch_figures(entries: Sequence[Entry], out_dir: Path) -> dict[str, Path]:
    """A tuning-watch figure for every evaluation with a ``tune_watch.csv`` beside it, by label.

    Figures of watches no longer found are removed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Path] = {}
    for entry in entries:
        rows = read_watch(entry.path.parent / WATCH_NAME)
        if not rows:
            continue
        e = entry.evaluation
        # The run's folder, from its tuned generator (round r > 1 tunes in <run>/round<r>/):
        # runs of one objective in a sweep share a name but not a folder.
        folder = Path(e.generator_after).parent
        folder = folder if e.round == 1 else folder.parent
        label = f"{entry.name}, round {e.round} ({folder.name})"
        slug = "".join(c if c.isalnum() or c in "-_." else "_"
                       for c in f"{folder.name}_{entry.name}_r{e.round}")
        drawn[label] = plot_watch(rows, label,
                                  out_dir / f"{WATCH_PREFIX}{len(drawn):02d}_{slug}.png")
    for stale in out_dir.glob(f"{WATCH_PREFIX}*.png"):
        if stale not in drawn.values():
            stale.unlink()
    return drawn


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


