"""Does the PIR paper reproduce? The claims sweep, and a verdict per claim.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench/claims.py            # the benchmark (~2 h)
    python scripts/bench/claims.py --smoke --out /tmp/claims-smoke    # a few minutes' check

The paper's experiment design at CPU scale (section 4, C.4, A.3): the six
colour objectives; at every VGG16 layer single filters (k = 1) and 20-filter
sets, ``--seeds`` of each per layer (default 1: 22 objectives, 44 jobs, about 2 hours
beside one other single-threaded job; each seed adds 16 objectives) (random VGG
weights at 64 px input: no
ImageNet weights can be downloaded here); a second round (``iterations=2``)
for pool2 and fc8 single filters. Each objective is collected once and gets
one estimator; then two methods tune from them, as Hydra multiruns with the
joblib launcher (``hydra/launcher=local``):

* ``paper``: ``tune=pir``, the paper's gradient through the estimator;
* ``select``: ``tune=select``, the default: best-of-n with the discriminator's
  realism filter.

Each job's run directory ``<out>/jobs/<objective>/<method>`` is seeded with
the shared PIR data and estimator, so the loop skips straight to tuning; a job
whose evaluation exists is not run again (a stopped sitting resumes). The
loop's quality stages are off (``quality.in_loop=false``): the claims read the
evaluations only. ``pirtune.report.claims`` judges each claim per method;
writes ``claims.{md,csv,png}`` (by default to docs/bench/) and, except with
``--smoke``, the README's "Does the paper reproduce?" section between its
markers.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per job: the jobs run side by side

import matplotlib  # noqa: E402

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
START, END = "<!-- claims:start -->", "<!-- claims:end -->"

COLOURS = ("color_red", "color_green", "color_blue", "color_red_blue", "color_green_red",
           "color_green_blue_red")
LAYERS = ("pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "fc7", "fc8")
ITERATED = ("pool2", "fc8")  # A.3: a second round for single filters of these layers
VGG_SETTINGS = ("++objective.weights=random", "++objective.input_size=64")
COMMON = ("logger=csv", "progress=false", "quality.in_loop=false", "tune.eval_every=0")
# Seconds, not minutes: few images, one estimator epoch, a few tuning steps.
SMOKE = ("data.num_images=64", "data.cache_dir=null", "collect.num_images=48",
         "collect.impressions=100", "collect.batch_size=48", "estimator.epochs=1",
         "estimator.batch_size=16", "evaluate.num_samples=32", "evaluate.batch_size=32")
# The full sweep's sizes (measured costs: docs/bench/claims.md): the paper's 1000
# collected images, 1000 evaluated per side, and CPU tuning steps.
FULL: tuple[str, ...] = ()
METHODS = {"paper": "pir", "select": "select"}


@dataclass(frozen=True)
class Objective:
    """One objective of the sweep: its config option and overrides, and its run label."""

    option: str                # objective=<option>
    k: int | None = None       # VGG: filters (1: a single filter), sampled with seed
    seed: int = 0
    rounds: int = 1

    @property
    def overrides(self) -> list[str]:
        if self.k is None:
            return [f"objective={self.option}"]
        return [f"objective={self.option}", f"objective.k={self.k}",
                f"objective.seed={self.seed}", *VGG_SETTINGS]

    @property
    def name(self) -> str:
        """The run label's objective part (``pirtune.objectives`` names)."""
        if self.k is None:
            return self.option
        return f"{self.option}_k{self.k}_s{self.seed}"

    @property
    def label(self) -> str:
        return f"cpu-{self.name}"


def plan(seeds: int, smoke: bool) -> list[Objective]:
    """Every objective of the sweep: colours first, then VGG by layer, k and seed.

    Seeds 0..seeds-1 give different single filters and filter sets per layer
    (the statistics of claims 2-4 need several points per layer); pool2 and
    fc8 single filters run two rounds (A.3).
    """
    if smoke:
        return [Objective("color_blue"), Objective("color_green_red"),
                Objective("vgg_pool2", 1, 0, rounds=2), Objective("vgg_fc8", 20, 0)]
    found = [Objective(option) for option in COLOURS]
    for layer in LAYERS:
        for k in (1, 20):
            for seed in range(seeds):
                found.append(Objective(f"vgg_{layer}", k, seed,
                                       2 if k == 1 and layer in ITERATED else 1))
    return found


def jobs(objectives: list[Objective], methods: list[str]) -> list[tuple[Objective, str]]:
    return [(o, m) for o in objectives for m in methods]


def job_done(root: Path, objective: Objective, method: str) -> bool:
    """A job is done when its last round's evaluation is written."""
    folder = root / "jobs" / objective.label / method
    last = folder if objective.rounds == 1 else folder / f"round{objective.rounds}"
    return (last / "evaluation.json").is_file()


def pirtune(args: list[str], log: Path) -> None:
    """Run ``python -m pirtune.train`` with ``args``; its output goes to ``log``."""
    command = [sys.executable, "-m", "pirtune.train", *args]
    print("  $", " ".join(command[1:]), flush=True)
    with log.open("a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"claims: failed ({done.returncode}); see {log}")


def _sweeps(objectives: list[Objective]) -> list[tuple[str, list[str]]]:
    """The objectives as Hydra sweeps: the colours, and VGG by (k, seed) over the layers."""
    out = []
    colours = [o.option for o in objectives if o.k is None]
    if colours:
        out.append(("colour", [f"objective={','.join(colours)}"]))
    for k, seed in sorted({(o.k, o.seed) for o in objectives if o.k is not None}):
        layers = [o.option for o in objectives if (o.k, o.seed) == (k, seed)]
        out.append((f"k{k}-s{seed}", [f"objective={','.join(layers)}", f"objective.k={k}",
                                      f"objective.seed={seed}", *VGG_SETTINGS]))
    return out


def prepare(root: Path, objectives: list[Objective], extra: list[str], n_jobs: int,
            log: Path) -> None:
    """Collect each objective once and fit its estimator (stages skip what is done)."""
    base = root / "base"
    where = "${run_label:}"
    launcher = [f"hydra.launcher.n_jobs={n_jobs}", "hydra/launcher=local", *COMMON, *extra]
    todo = [o for o in objectives if not (base / o.label / "estimator.pt").is_file()]
    for tag, sweep in _sweeps(todo):
        # Quoted: Hydra's override grammar takes an interpolation inside a path only in quotes.
        pirtune(["-m", "stage=collect", f"run_dir='{base}/{where}'",
                 f"hydra.sweep.dir={root}/multirun/collect-{tag}", *sweep, *launcher], log)
        pirtune(["-m", "stage=estimate", f"run_dir='{base}/{where}'",
                 f"hydra.sweep.dir={root}/multirun/estimate-{tag}", *sweep, *launcher], log)


def seed_jobs(root: Path, objectives: list[Objective], methods: list[str]) -> None:
    """Give every job's run directory the shared PIR data and estimator."""
    import shutil

    for objective in objectives:
        shared = root / "base" / objective.label
        for method in methods:
            job = root / "jobs" / objective.label / method
            job.mkdir(parents=True, exist_ok=True)
            if not (job / "pir_data").exists():
                (job / "pir_data").symlink_to((shared / "pir_data").resolve(),
                                              target_is_directory=True)
            for file in ("estimator.pt", "estimator_report.json"):
                if not (job / file).exists():
                    shutil.copyfile(shared / file, job / file)


def method_settings(method: str, steps: int, smoke: bool) -> list[str]:
    """The method's overrides: tune=pir at ``steps``; tune=select at its defaults (a
    smoke run calibrates on 20 draws per class)."""
    if METHODS[method] == "pir":
        return ["tune=pir", f"tune.steps={steps}"]
    return [f"tune={METHODS[method]}", *(["tune.method.calibration=20"] if smoke else [])]


def tune_all(root: Path, objectives: list[Objective], methods: list[str], extra: list[str],
             n_jobs: int, steps: int, log: Path, smoke: bool = False) -> int:
    """Each method's jobs as Hydra multiruns (one per sweep shape and round count); returns
    how many jobs were already done."""
    kept = 0
    for method in methods:
        settings = method_settings(method, steps, smoke)
        for rounds in sorted({o.rounds for o in objectives}):
            group = [o for o in objectives if o.rounds == rounds]
            todo = [o for o in group if not job_done(root, o, method)]
            kept += len(group) - len(todo)
            for tag, sweep in _sweeps(todo):
                pirtune(["-m", "hydra/launcher=local", f"hydra.launcher.n_jobs={n_jobs}",
                         f"run_dir='{root}/jobs/${{run_label:}}/{method}'",
                         f"iterations={rounds}", *settings, *sweep,
                         f"hydra.sweep.dir={root}/multirun/tune-{method}-r{rounds}-{tag}",
                         *COMMON, *extra], log)
    return kept


# ------------------------------------------------------------------------ results


def evaluation_rows(entries) -> list[dict]:
    """A row per evaluation: objective, method, round, d, p, ΔPIR, predicted Δ, A.2's
    controls and the tuning's CPU seconds."""
    from pirtune.report.claims import method_of

    rows = []
    for entry in entries:
        e = entry.evaluation
        rows.append({"objective": entry.name, "panel": " / ".join(entry.group),
                     "method": method_of(e), "round": e.round, "d": e.change.cohens_d,
                     "p": e.change.welch.p, "delta": e.change.delta,
                     "predicted_delta": e.predicted.delta, "initial_sd": e.training_set.sd,
                     "zero_share": e.training_set.zero_share})
    return rows


def plot(entries, verdicts, path: Path) -> Path:
    """Fig. 2's VGG panels by layer (d per method, single filters and sets) and Fig. 4
    (true vs predicted change, per method)."""
    from pirtune.report.claims import by_method

    fig = Figure(figsize=(12, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    groups = by_method([e for e in entries if e.evaluation.round == 1])
    for i, (method, group) in enumerate(groups.items()):
        for ax, many in zip(axes[:2], (False, True), strict=True):
            vgg = [e for e in group if e.evaluation.objective.get("kind") == "vgg"
                   and (int(e.evaluation.objective.get("k") or 1) > 1) == many]
            x = [LAYERS.index(e.evaluation.objective["layer"]) + 0.12 * (i - 0.5) for e in vgg]
            ax.scatter(x, [e.evaluation.change.cohens_d for e in vgg], color=f"C{i}",
                       alpha=0.8, label=f"tune={method}")
        axes[2].scatter([e.evaluation.predicted.delta for e in group],
                        [e.evaluation.change.delta for e in group], color=f"C{i}",
                        alpha=0.7, label=f"tune={method}")
    for ax, title in zip(axes[:2], ("single filters", "20-filter sets"), strict=True):
        ax.set_xticks(range(len(LAYERS)), LAYERS)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(f"VGG {title} (round 1)")
        ax.set_ylabel("Cohen's d")
    low, high = axes[2].get_xlim()
    axes[2].plot([low, high], [low, high], color="grey", linewidth=0.8, label="β = 1")
    axes[2].plot([low, high], [1.67 * low, 1.67 * high], color="grey", linestyle=":",
                 label="the paper's β = 1.67")
    axes[2].set_xlabel("predicted ΔPIR (the estimator's)")
    axes[2].set_ylabel("true ΔPIR")
    axes[2].set_title("A.1: true vs predicted change")
    for ax in axes:
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return path


FIDELITY = [
    "VGG16's weights are random (seeded; `objective.weights=random`): ImageNet weights "
    "cannot be downloaded on this machine, so the VGG objectives are arbitrary fixed "
    "filters, not the paper's. The input is 64 px (`objective.input_size=64`), not 224.",
    "The generator is the shipped CPU generator (32 px, `src/pirtune/checkpoints/"
    "acgan-cpu.pt`), not the paper's 64 px ACGAN; tuning takes {steps} steps at lr 5e-5, "
    "not 50,000 at 1e-6; the estimator is the small CNN ({epochs} epochs), not Inception v2.",
    "Each objective is collected once (1000 images × 1000 impressions) and its estimator "
    "fitted once; both methods tune from them. Each evaluation draws 1000 fresh images per "
    "side, as the paper.",
    "Paper scale on a GPU: `pirtune-train experiment=paper objective=<objective> "
    "iterations=<1|2> tune=pir` (with `objective.weights=imagenet` where the weights exist).",
]


def fidelity(steps: int, epochs: int) -> list[str]:
    return [f"- {line.format(steps=steps, epochs=epochs)}" for line in FIDELITY]


def readme_section(verdicts, command: str, notes: list[str]) -> list[str]:
    """The README's summary: the verdict table and the fidelity notes."""
    from pirtune.report.claims import claims_markdown

    table = claims_markdown(verdicts)
    table = table[:table.index("") if "" in table else len(table)]
    return [START, "", f"From `{command}` (docs/bench/claims.md has every statistic; the "
            "verdict rules are `pirtune.report.claims`'s):", "", *table, "",
            "How far this is from the paper:", "", *notes, "", END]


def write_readme(lines: list[str], path: Path = README) -> None:
    """Replace the text between the markers (or add the section at the end)."""
    text = path.read_text()
    block = "\n".join(lines)
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Does the paper reproduce?\n\n" + block + "\n"
    path.write_text(text)


def _number(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else (f"{value:.1e}" if value and abs(value) < 1e-3
                                                else f"{value:.3f}")
    return str(value)


def write(root: Path, out: Path, smoke: bool, seconds: float, kept: int, total: int,
          steps: int, epochs: int, command: str) -> list:
    from pirtune.report.claims import claims_markdown, judge, verdict_rows
    from pirtune.report.entries import find_entries

    entries = find_entries(root / "jobs")
    verdicts = judge(entries)
    out.mkdir(parents=True, exist_ok=True)
    rows = verdict_rows(verdicts)
    with (out / "claims.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(entries, verdicts, out / "claims.png")
    evaluations = evaluation_rows(entries)
    columns = list(evaluations[0]) if evaluations else []
    notes = fidelity(steps, epochs)
    title = "# Does the PIR paper reproduce?"
    text = [title + (" (smoke run: sizes too small to mean anything)" if smoke else ""),
            "", f"`{command}`: {len(entries)} evaluations from {total} jobs, "
            f"{seconds / 60:.0f} minutes on {os.cpu_count()} cores"
            + (f" for the jobs not yet done ({kept} were kept from an earlier sitting)."
               if kept else "."), "",
            "![VGG effect sizes by layer and the introspection plot](claims.png)", "",
            "## Verdicts", "", *claims_markdown(verdicts), "", "## Fidelity", "", *notes, "",
            "## Every evaluation", "",
            "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(_number(r[c]) for c in columns) + " |" for r in evaluations),
            ""]
    (out / "claims.md").write_text("\n".join(text))
    print("\n".join(text[:40]))
    if not smoke:
        write_readme(readme_section(verdicts, command, notes))
    return verdicts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the pipeline")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the table, figure and runs go (default docs/bench, runs "
                             "under runs/claims-bench; --smoke: runs/claims-smoke for both)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs side by side (joblib)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="single filters and filter sets per VGG layer (2 doubles the VGG "
                             "jobs; a later sitting with --seeds 2 runs only the new ones)")
    parser.add_argument("--steps", type=int, default=300, help="tune=pir's steps")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="these objectives only, by name (color_blue, vgg_pool2_k1_s0)")
    parser.add_argument("--report-only", action="store_true",
                        help="write the verdicts from the jobs done so far; run nothing")
    args = parser.parse_args(argv)
    root = (args.out or REPO / "runs" / ("claims-smoke" if args.smoke else "claims-bench"))
    root = root.resolve()
    out = args.out or (root if args.smoke else REPO / "docs" / "bench")
    root.mkdir(parents=True, exist_ok=True)
    log = root / "claims.log"
    extra = list(SMOKE if args.smoke else FULL)
    steps = 4 if args.smoke else args.steps
    epochs = 1 if args.smoke else 20
    objectives = [o for o in plan(args.seeds, args.smoke)
                  if args.only is None or o.name in args.only]
    command = "python scripts/bench/claims.py" + (" --smoke" if args.smoke else "") + (
        f" --seeds {args.seeds}" if args.seeds != 1 else "") + (
        f" --steps {args.steps}" if args.steps != 300 and not args.smoke else "")
    total = len(jobs(objectives, args.methods))
    start = time.perf_counter()
    print(f"claims: {total} jobs ({len(objectives)} objectives × {len(args.methods)} "
          f"methods) in {root}", flush=True)
    kept = total
    if not args.report_only:
        prepare(root, objectives, extra, args.jobs, log)
        seed_jobs(root, objectives, args.methods)
        kept = tune_all(root, objectives, args.methods, extra, args.jobs, steps, log,
                        args.smoke)
    write(root, Path(out), args.smoke, time.perf_counter() - start, kept, total, steps,
          epochs, command)


if __name__ == "__main__":
    main()
