"""The tuning frontier: effect size (gold) against realism, one marker per tuning method.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench/tuning_frontier.py            # the benchmark
    python scripts/bench/tuning_frontier.py --smoke --out /tmp/frontier-smoke  # a minute's check

Objectives: color_blue, color_green_red (with its mirrored control),
color_red_blue and VGG16 pool2 (random weights, 64 px input). Every objective
is collected once and gets its estimator (and an ensemble of three where a
variant needs one); then each tuning variant runs the loop's tune → evaluate
→ quality from them, as one Hydra multirun with the joblib launcher
(``hydra/launcher=local``). The methods (``tune.method``, ``pirtune.tuning``),
each at two to four strengths:

* ``gradient``: the paper's (``tune=pir``), over steps;
* ``select``: best-of-n, over the acceptance rate;
* ``latent``: the learned latent prior, over the KL's weight β;
* ``distill``: the reweighted copy, over the tilted pool's effective share.

Each variant is a config file written to ``<out>/variants/frontier/`` and
chosen with ``+frontier=<id>``; it names its run directory
``<out>/jobs/<objective>/<id>``, which is seeded with the shared PIR data,
estimator and untuned quality, so the loop skips straight to tuning. Writes
``tuning_frontier.{csv,png,md}`` (by default to docs/bench/): Cohen's d and
Welch's p of the true objective, the mean true PIR, precision against the
real scenes, FID/precision/recall against the real scenes tilted to the same
gain (``pirtune.metrics.tilted``) and its effective sample size, the
specific gain where a control exists, and the CPU seconds of tuning; and the
README's picture: before, the paper's tuning and the chosen default on the
same latents (a select result draws its own).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per job: the jobs run side by side

import matplotlib  # noqa: E402

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHIPPED_GENERATOR = REPO / "src" / "pirtune" / "checkpoints" / "acgan-cpu.pt"

# The objectives, as command-line overrides; the VGG settings are ignored by colour objectives.
OBJECTIVES = ("color_blue", "vgg_pool2", "color_red_blue", "color_green_red")
OBJECTIVE_SETTINGS = ("++objective.weights=random", "++objective.input_size=64")


@dataclass(frozen=True)
class Variant:
    """One tuning setting: its tune option and the ``tune.*`` values it sets (dotted keys)."""

    option: str                       # pir, pir_conservative, select, latent or distill
    settings: dict[str, float] = field(default_factory=dict)

    @property
    def members(self) -> int:
        return 3 if self.option == "pir_conservative" else 1

    @property
    def method(self) -> str:
        """The method's name (``pirtune.tuning``): gradient, select, latent or distill."""
        return "gradient" if self.option.startswith("pir") else self.option

    @property
    def id(self) -> str:
        short = {"w_pir": "w", "steps": "s", "reward_lambda": "l", "anchor": "a",
                 "method.acceptance": "a", "method.beta": "b", "method.keep": "k"}
        parts = [f"{short.get(k, k.rsplit('.', 1)[-1])}{v:g}"
                 for k, v in sorted(self.settings.items())]
        label = {"pir": "paper", "pir_conservative": "controlled"}.get(self.option, self.option)
        return "-".join([label, *parts])


Sweep = dict[str, list[Variant]]  # objective option → its variants


def _paper(steps: int, w_pir: float = 1000) -> Variant:
    return Variant("pir", {"w_pir": w_pir, "steps": steps})


def _select(acceptance: float) -> Variant:
    return Variant("select", {"method.acceptance": acceptance})


def _latent(beta: float) -> Variant:
    return Variant("latent", {"method.beta": beta})


def _distill(keep: float) -> Variant:
    return Variant("distill", {"method.keep": keep})


def variants(smoke: bool) -> Sweep:
    """The sweep, per objective, sized to about two hours on 2 cores.

    color_blue carries the frontier: each method at two or three strengths beside
    the paper's tuning at make run's former settings (400 steps); the other
    objectives take each method at one, its default or the strength color_blue
    favours. The objectives run in this order, so a sitting cut short has the
    frontier first.
    """
    if smoke:
        group = [_paper(4), Variant("select", {"method.acceptance": 0.5,
                                               "method.calibration": 20}),
                 Variant("latent", {"method.beta": 0.01, "steps": 4}),
                 Variant("distill", {"method.keep": 0.5, "method.pool": 64, "steps": 4})]
        return {option: group for option in OBJECTIVES}
    others = [_paper(400), _select(0.3), _latent(0.03), _distill(0.3)]
    return {
        "color_blue": [_paper(400), _select(0.3), _select(0.15), _latent(0.1), _latent(0.03),
                       _latent(0.01), _distill(0.3), _distill(0.1)],
        # Where the paper's d is higher, selection goes further too.
        "vgg_pool2": [*others, _select(0.15), _select(0.08)],
        "color_red_blue": [*others, _select(0.1), _select(0.05)],
        "color_green_red": others,
    }


# Seconds, not minutes: few images, one estimator epoch, a few tuning steps.
SMOKE = ("data.num_images=64", "data.cache_dir=null", "collect.num_images=48",
         "collect.impressions=100", "collect.batch_size=48", "estimator.epochs=1",
         "estimator.batch_size=16", "tune.eval_every=2", "tune.eval_samples=32",
         "tune.checkpoint_every=2", "evaluate.num_samples=32", "evaluate.batch_size=32",
         "quality.samples=32", "quality.kid_subsets=5", "quality.tilt_ess_floor=4")
COMMON = ("logger=csv", "progress=false")


def pirtune(args: list[str], log: Path) -> None:
    """Run ``python -m pirtune.train`` with ``args``; its output goes to ``log``."""
    command = [sys.executable, "-m", "pirtune.train", *args]
    print("  $", " ".join(command[1:]), flush=True)
    with log.open("a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"tuning_frontier: failed ({done.returncode}); see {log}")


def objective_names(extra: list[str]) -> dict[str, str]:
    """Each objective option's run label, ``<scale>-<objective>``: its run folders' name."""
    from hydra import compose, initialize_config_dir

    from pirtune.compose import register_resolvers
    from pirtune.paths import CONFIG_DIR
    from pirtune.stages.naming import run_label

    register_resolvers()
    names = {}
    for option in OBJECTIVES:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="train",
                          overrides=[f"objective={option}", *OBJECTIVE_SETTINGS, *extra])
        names[option] = run_label(cfg, "loop")
    return names


def prepare(root: Path, extra: list[str], jobs: int, log: Path, planned: Sweep) -> None:
    """Collect each objective once; fit its single estimator (and its ensemble where a
    variant needs one); score the untuned generator once."""
    base = root / "base"
    sweep = [f"objective={','.join(planned)}", *OBJECTIVE_SETTINGS,
             f"hydra.launcher.n_jobs={jobs}", "hydra/launcher=local", *COMMON, *extra]
    where = "${run_label:}"
    # Quoted: Hydra's override grammar takes an interpolation inside a path only in quotes.
    pirtune(["-m", "stage=collect", f"run_dir='{base}/{where}'",
             f"hydra.sweep.dir={root}/multirun/collect", *sweep], log)
    for members in sorted({v.members for group in planned.values() for v in group}):
        pirtune(["-m", "stage=estimate", f"estimator.members={members}",
                 f"run_dir='{base}/{where}-m{members}'", f"pir_data='{base}/{where}/pir_data'",
                 f"hydra.sweep.dir={root}/multirun/estimate-m{members}", *sweep], log)
    pirtune(["stage=quality", f"run_dir={base}/quality", *COMMON, *extra], log)
    # The generator the jobs start from, kept beside them: the picture's "before" panel
    # stays the generator they were tuned from after a new one ships.
    if not (base / "start.pt").is_file():
        shutil.copyfile(SHIPPED_GENERATOR, base / "start.pt")


def seed_jobs(root: Path, names: dict[str, str], sweep: Sweep) -> None:
    """Give every job's run directory the shared PIR data, estimator and untuned quality."""
    base = root / "base"
    for option, name in names.items():
        for variant in sweep[option]:
            job = root / "jobs" / name / variant.id
            job.mkdir(parents=True, exist_ok=True)
            if not (job / "pir_data").exists():
                (job / "pir_data").symlink_to((base / name / "pir_data").resolve(),
                                              target_is_directory=True)
            for file in ("estimator.pt", "estimator_report.json"):
                shutil.copyfile(base / f"{name}-m{variant.members}" / file, job / file)
            shutil.copyfile(base / "quality" / "quality.json", job / "quality_base.json")


def write_variants(root: Path, sweep: Sweep) -> Path:
    """One config file per variant in ``<root>/variants/frontier/``; returns the search path."""
    folder = root / "variants" / "frontier"
    folder.mkdir(parents=True, exist_ok=True)
    for variant in {v.id: v for group in sweep.values() for v in group}.values():
        plain = {k: v for k, v in variant.settings.items() if not k.startswith("method.")}
        method = {k[len("method."):]: v for k, v in variant.settings.items()
                  if k.startswith("method.")}
        lines = ["# @package _global_", "defaults:", f"  - override /tune: {variant.option}",
                 f"run_dir: {root}/jobs/${{run_label:}}/{variant.id}",
                 "tune:", *(f"  {key}: {value:g}" for key, value in plain.items()),
                 *(["  method:", *(f"    {key}: {value:g}" for key, value in method.items())]
                   if method else [])]
        (folder / f"{variant.id}.yaml").write_text("\n".join(lines) + "\n")
    return folder.parent


def tune_all(root: Path, names: dict[str, str], sweep: Sweep, extra: list[str], jobs: int,
             log: Path) -> int:
    """Each objective's variants, as a Hydra multirun with the joblib launcher; returns how
    many jobs it left out.

    A job whose evaluation and quality are already written is left out, so a stopped
    benchmark picks up where it stopped."""
    search = write_variants(root, sweep)
    kept = 0
    for option, group in sweep.items():
        todo = [v.id for v in group
                if not (root / "jobs" / names[option] / v.id / "quality.json").exists()]
        kept += len(group) - len(todo)
        if not todo:
            continue
        pirtune(["-m", "hydra/launcher=local", f"hydra.launcher.n_jobs={jobs}",
                 f"hydra.searchpath=[file://{search}]", f"+frontier={','.join(todo)}",
                 f"objective={option}", *OBJECTIVE_SETTINGS,
                 f"hydra.sweep.dir={root}/multirun/tune-{option}", *COMMON, *extra], log)
    return kept


def _last(rows: list[dict[str, str]], key: str) -> float:
    return float(rows[-1][key]) if rows and rows[-1].get(key) not in (None, "") else math.nan


def _tuned_meta(path: Path) -> dict:
    """The tuned bundle's provenance and sampler settings (no weights are built)."""
    import torch
    from torch.torch_version import TorchVersion

    with torch.serialization.safe_globals([TorchVersion]):
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    sampler = bundle.get("sampler") or {}
    return {"provenance": bundle.get("provenance", {}),
            "seconds_per_image": sampler.get("seconds_per_image")}


def results(root: Path, names: dict[str, str], sweep: Sweep) -> list[dict]:
    """A row per job: its method and settings, d and p, realism, the tilted yardstick, cost."""
    rows = []
    for option, name in names.items():
        for variant in sweep[option]:
            job = root / "jobs" / name / variant.id
            evaluation = json.loads((job / "evaluation.json").read_text())
            before_record = json.loads((job / "quality_base.json").read_text())
            record = json.loads((job / "quality.json").read_text())
            before, after = before_record["generated"], record["generated"]
            tilted = record.get("tilted") or {}
            watch_file = job / "tune_watch.csv"
            watch = list(csv.DictReader(watch_file.open())) if watch_file.is_file() else []
            change, control = evaluation["change"], evaluation.get("control")
            meta = _tuned_meta(job / "tuned.pt")
            rows.append({
                "objective": option, "method": variant.method, "variant": variant.id,
                "d": change["cohens_d"], "p": change["welch"]["p"],
                "delta_pir": change["delta"], "pir_before": change["mean_before"],
                "pir_after": change["mean_after"],
                "control_delta": control["delta"] if control else math.nan,
                "specific_gain": change["delta"] - control["delta"] if control else math.nan,
                "specific_share": ((change["delta"] - control["delta"]) / change["delta"]
                                   if control and change["delta"] else math.nan),
                "precision_before": before["precision"], "precision_after": after["precision"],
                "fid_before": before["fid"], "fid_after": after["fid"],
                "recall_before": before["recall"], "recall_after": after["recall"],
                "tilted_fid": tilted.get("fid", math.nan),
                "tilted_precision": tilted.get("precision", math.nan),
                "tilted_recall": tilted.get("recall", math.nan),
                "tilted_ess": tilted.get("ess", math.nan),
                "tilted_note": record.get("tilted_note") or "",
                "cpu_seconds": meta["provenance"].get("cpu_seconds", math.nan),
                "seconds": meta["provenance"].get("seconds", math.nan),
                "seconds_per_image": meta["seconds_per_image"] or math.nan,
                "gap_end": _last(watch, "gap"),
            })
    return rows


MARKERS = {"gradient": "o", "select": "s", "latent": "^", "distill": "D"}


def plot(rows: list[dict], path: Path) -> Path:
    """Cohen's d (gold) against precision and against tilted FID: colour by objective,
    marker by method."""
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for i, option in enumerate(OBJECTIVES):
        for method, marker in MARKERS.items():
            group = [r for r in rows if r["objective"] == option and r["method"] == method]
            for ax, key in zip(axes, ("precision_after", "tilted_fid"), strict=True):
                ax.scatter([r[key] for r in group], [r["d"] for r in group], marker=marker,
                           color=f"C{i}", alpha=0.8, label=f"{option}, {method}")
        start = [r for r in rows if r["objective"] == option][:1]
        for r in start:
            axes[0].axvline(r["precision_before"], color=f"C{i}", linewidth=0.8,
                            linestyle=":")
    axes[0].set_xlabel("precision against real scenes (dotted: before tuning)")
    axes[1].set_xlabel("FID against the real scenes tilted to the same mean PIR")
    axes[1].set_xscale("log")
    axes[1].xaxis.set_major_formatter(ScalarFormatter())
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylabel("Cohen's d of the true objective")
    handles = [axes[0].scatter([], [], marker=m, color="grey", label=name)
               for name, m in MARKERS.items()]
    handles += [axes[0].scatter([], [], marker="o", color=f"C{i}", label=o)
                for i, o in enumerate(OBJECTIVES)]
    axes[1].legend(handles=handles, fontsize="small", loc="best")
    fig.savefig(path, dpi=100)
    return path


DEFAULT_D = 1.2   # the bar for make run's method on color_blue


def chosen(rows: list[dict]) -> tuple[dict, dict] | None:
    """color_blue's paper run at make run's former settings (400 steps) and the default:
    of the runs reaching d ≥ 1.2, the one with the best precision (the highest d if none)."""
    blue = [r for r in rows if r["objective"] == "color_blue"]
    paper = [r for r in blue if r["method"] == "gradient"]
    others = [r for r in blue if r["method"] != "gradient"]
    if not paper or not others:
        return None
    paper_run = next((r for r in paper if "-s400-" in r["variant"] + "-"), paper[0])
    reach = [r for r in blue if r["d"] >= DEFAULT_D]
    pick = (max(reach, key=lambda r: r["precision_after"]) if reach
            else max(blue, key=lambda r: r["d"]))
    return paper_run, pick


def before_after(root: Path, names: dict[str, str], rows: list[dict], path: Path) -> Path | None:
    """The README's picture: the same latents before tuning, after the paper's tuning and
    after the chosen default, each titled with its d, precision and tilted FID."""
    from pirtune.report.figures import same_latents

    pair = chosen(rows)
    if pair is None:
        return None
    paper, default = pair
    jobs = root / "jobs" / names["color_blue"]
    panels = [(root / "base" / "start.pt",
               f"before tuning\nprecision {paper['precision_before']:.2f}")]
    for row, title in ((paper, "the paper's gradient (tune=pir)"),
                       (default, f"default: tune={default['method']}")):
        own = " (its own draws)" if row["method"] == "select" else ""
        panels.append((jobs / row["variant"] / "tuned.pt",
                       f"{title}{own}\n{row['variant']}: d = {row['d']:.2f}\n"
                       f"precision {row['precision_after']:.2f}, tilted FID "
                       f"{row['tilted_fid']:.1f}"))
    return same_latents(panels, path)


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and value and abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets, measured."""
    lines = []
    pair = chosen(rows)
    if pair is not None:
        paper, default = pair
        floor = default["precision_before"] - 0.05
        lines.append(f"- color_blue, the default (the best precision at d ≥ {DEFAULT_D}): "
                     f"{default['variant']}: d = {default['d']:.2f}, precision "
                     f"{default['precision_after']:.3f} (target ≥ {floor:.3f}: "
                     f"{'met' if default['precision_after'] >= floor else 'missed'}), tilted "
                     f"FID {default['tilted_fid']:.2f} against the paper's "
                     f"{paper['tilted_fid']:.2f} at d = {paper['d']:.2f} (target ≤ ¼: "
                     f"{'met' if default['tilted_fid'] <= paper['tilted_fid'] / 4 else 'missed'}"
                     ").")
    for option in ("vgg_pool2", "color_red_blue"):
        group = [r for r in rows if r["objective"] == option]
        paper = [r for r in group if r["method"] == "gradient"]
        if not paper:
            continue
        bar = max(r["d"] for r in paper)
        reach = [r for r in group if r["method"] != "gradient" and r["d"] >= bar]
        floor = group[0]["precision_before"] - 0.05
        if reach:
            best = max(reach, key=lambda r: r["precision_after"])
            lines.append(f"- {option}: at the paper's d ({bar:.2f}) or higher, the best "
                         f"precision is {best['variant']}'s {best['precision_after']:.3f} "
                         f"(d = {best['d']:.2f}; target ≥ {floor:.3f}: "
                         f"{'met' if best['precision_after'] >= floor else 'missed'}).")
        else:
            best = max((r for r in group if r["method"] != "gradient"), key=lambda r: r["d"],
                       default=None)
            lines.append(f"- {option}: no other method reached the paper's d ({bar:.2f}); the "
                         "highest was "
                         + (f"{best['variant']}'s d = {best['d']:.2f} at precision "
                            f"{best['precision_after']:.3f}." if best else "none."))
    for r in rows:
        if r["objective"] == "color_green_red" and not math.isnan(r["specific_share"]):
            lines.append(f"- color_green_red, {r['variant']}: specific gain "
                         f"{r['specific_gain']:+.4f} of {r['delta_pir']:+.4f} "
                         f"({r['specific_share']:.0%}; target ≥ 30 %).")
    return lines


COLUMNS = ("objective", "variant", "d", "p", "pir_after", "precision_after", "tilted_fid",
           "tilted_precision", "tilted_recall", "tilted_ess", "specific_share", "fid_after",
           "recall_after", "cpu_seconds", "seconds_per_image")


def write(rows: list[dict], out: Path, stem: str, smoke: bool, seconds: float,
          kept: int = 0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{stem}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / f"{stem}.png")
    table = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * (len(COLUMNS) - 2),
             *("| " + " | ".join(_number(r[c]) for c in COLUMNS) + " |" for r in rows)]
    notes = sorted({f"- {r['objective']} {r['variant']}: no tilted figures: {r['tilted_note']}"
                    for r in rows if r["tilted_note"]})
    untuned = {r["objective"]: r for r in rows}
    baseline = [f"- {o}: mean true PIR {r['pir_before']:.3f}, precision "
                f"{r['precision_before']:.3f}, FID {r['fid_before']:.2f}, recall "
                f"{r['recall_before']:.3f}" for o, r in untuned.items()]
    text = [f"# Tuning frontier{' (smoke run: sizes too small to mean anything)' if smoke else ''}",
            "", f"`python scripts/bench/tuning_frontier.py{' --smoke' if smoke else ''}`, "
            f"{seconds / 60:.0f} minutes on {os.cpu_count()} cores"
            + (f" for the runs not yet done ({kept} of {len(rows)} were kept from an earlier "
               "sitting)." if kept else "."), "",
            "Realism is precision against real scenes; the tilted figures compare the tuned "
            "samples with the real scenes reweighted ∝ exp(β·PIR) to the same mean true PIR "
            "(`pirtune.metrics.tilted`; ESS: its effective number of real images). Recall "
            "against the untuned real set falls with any real gain.", "",
            f"![d against precision and tilted FID]({stem}.png)", "", "## Before tuning", "",
            *baseline, "", "## Targets", "", *targets(rows), "", "## Every run", "", *table,
            "", *(["## Runs without a tilted set", "", *notes, ""] if notes else [])]
    (out / f"{stem}.md").write_text("\n".join(text))
    print("\n".join(text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the pipeline")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the table, plot and runs go (default docs/bench, runs "
                             "under runs/frontier; --smoke: runs/frontier-smoke for both)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs side by side (joblib)")
    parser.add_argument("--only", nargs="+", choices=OBJECTIVES, default=None,
                        help="these objectives only (a sitting cut short: write what is done)")
    args = parser.parse_args(argv)
    root = (args.out or REPO / "runs" / ("frontier-smoke" if args.smoke else "frontier"))
    root = root.resolve()
    out = args.out or (root if args.smoke else REPO / "docs" / "bench")
    root.mkdir(parents=True, exist_ok=True)
    log = root / "frontier.log"
    extra = list(SMOKE) if args.smoke else []
    sweep = variants(args.smoke)
    if args.only:
        sweep = {option: group for option, group in sweep.items() if option in args.only}
    start = time.perf_counter()
    print(f"tuning frontier: {sum(map(len, sweep.values()))} tuning runs over "
          f"{len(sweep)} objectives in {root}")
    names = {option: name for option, name in objective_names(extra).items()
             if option in sweep}
    prepare(root, extra, args.jobs, log, sweep)
    seed_jobs(root, names, sweep)
    kept = tune_all(root, names, sweep, extra, args.jobs, log)
    rows = results(root, names, sweep)
    write(rows, Path(out), "tuning_frontier", args.smoke, time.perf_counter() - start, kept)
    picture = before_after(root, names, rows, (root if args.smoke else REPO / "docs")
                           / "tuning_before_after.png")
    print(f"before/after picture: {picture}")


if __name__ == "__main__":
    main()
