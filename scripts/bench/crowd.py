"""Simulated crowds through the real web app, then the loop on their picks: d against picks.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python scripts/bench/crowd.py
        # docs/bench/crowd.{csv,md,png} and docs/human_loop.png; resumable (--work)
    python scripts/bench/crowd.py --smoke       # seconds-sized, into a temp dir

For each crowd seed in ``--seeds`` it starts ``pirtune-serve`` with the shipped
generator and lets simulated people (hidden objective ``--objective``,
Bradley–Terry picks at ``--temperature``, ``--random-share`` random picks,
``--undo-share`` undos) make ``--rounds`` picks each over HTTP
(``pirtune.webapp.crowd``). Then for each budget in ``--picks`` it keeps the
crowd's first budget/rounds people's sessions (a copy of the log) and runs
``pirtune-train data=interactions ... data.hidden_objective=true``: the choice
model with its temperature fitted on held-out people, tuning with the default
method (``tune=select``; pass ``tune=pir_anchored`` for the paper's gradient
with a stay-close term), the hidden objective's Welch's t and Cohen's d, and
the quality stage (precision against real scenes, FID to the real scenes tilted
by the hidden objective). Beside it, on the same export and the same held-out
sessions, a binned PIR estimator (C.3) is trained on the training sessions'
picks, and both are scored by held-out pick accuracy. Extra key=value
arguments go to pirtune-train.

Everything lives under ``--work`` (default runs/crowd-bench): each crowd's log
and every budget's run and row are kept, so a run cut off continues where it
stopped; a finished row is not run again. Loops with other pirtune-train
overrides on the same crowds get their own runs (a tag of the overrides), so
methods compare on identical picks.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from pirtune.data.datamodules import PIRDataModule
from pirtune.data.pir_dataset import PIRRecords, read_pir_dataset, write_records
from pirtune.estimator.choice import (
    ChoiceRounds,
    choice_report,
    pick_accuracy,
    read_choice_rounds,
    round_scores,
)
from pirtune.estimator.module import PIREstimatorModule
from pirtune.estimator.network import PIREstimator
from pirtune.paths import SHIPPED_GENERATOR
from pirtune.webapp.crowd import Noise, compose_objective, run_crowd
from pirtune.webapp.serve import launch

REPO = Path(__file__).resolve().parents[2]
TABLES = ("shown", "proposals", "choices", "undone_choices", "undone_shown", "undone_proposals")
SMOKE = ["estimator.epochs=1", "tune.steps=2", "tune.checkpoint_every=1",
         "evaluate.num_samples=32", "evaluate.bootstrap=100", "quality.in_loop=false",
         "data.real.num_images=64"]


def first_sessions(db: Path, out: Path, count: int) -> list[str]:
    """Copy the log ``db`` to ``out`` keeping its first ``count`` sessions; return their ids."""
    with sqlite3.connect(db) as source, sqlite3.connect(out) as target:
        source.backup(target)
    with sqlite3.connect(out) as log:
        kept = [sid for (sid,) in log.execute(
            "SELECT id FROM sessions ORDER BY created, id LIMIT ?", (count,))]
        marks = ",".join("?" * len(kept))
        for table in TABLES:
            log.execute(f"DELETE FROM {table} WHERE session_id NOT IN ({marks})", kept)
        log.execute(f"DELETE FROM sessions WHERE id NOT IN ({marks})", kept)
    return kept


def counts_of(rounds: ChoiceRounds, source: PIRRecords) -> PIRRecords:
    """The PIR records of ``rounds`` alone: each image's impressions and picks in them."""
    shown = torch.bincount(rounds.slots.flatten(), minlength=len(source))
    picks = torch.bincount(rounds.slots.gather(1, rounds.picked[:, None]).flatten(),
                           minlength=len(source))
    rows = torch.nonzero(shown).flatten()
    return dataclasses.replace(source.subset(rows), impressions=shown[rows],
                               positives=picks[rows], meta={"source": "training rounds"})


def binned_accuracy(export: Path, val_fraction: float, seed: int, epochs: int,
                    resolution: int, work: Path) -> dict:
    """C.3's binned estimator on the training sessions' picks, scored on held-out picks.

    The sessions are split exactly as ``stage=estimate`` splits them for the
    choice model (``ChoiceRounds.split`` with the same fraction and seed).
    """
    rounds = read_choice_rounds(export)
    train, held = rounds.split(val_fraction, seed)
    folder = write_records(work / "binned_train", counts_of(train, read_pir_dataset(export)))
    data = PIRDataModule([str(folder)], 0.0, 64, seed=seed)
    L.seed_everything(seed, verbose=False)
    module = PIREstimatorModule(PIREstimator("small_cnn", 100, resolution))
    L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False,
              accelerator="cpu").fit(module, datamodule=data)
    report = choice_report(module.cpu().frozen(), held, held_out=True)
    return dataclasses.asdict(report)


def hidden_accuracy(export: Path, val_fraction: float, seed: int, objective) -> float:
    """How often the hidden objective itself ranks the pick first on the held-out rounds:
    what a model that knew the objective exactly would score, given the people's noise."""
    _, held = read_choice_rounds(export).split(val_fraction, seed)
    return pick_accuracy(round_scores(objective, held), held.picked)


def loop(db: Path, home: Path, name: str, args, overrides: list[str]) -> tuple[Path, float]:
    """``pirtune-train data=interactions`` on ``db``; its run directory and wall time
    (a run cut off resumes: its finished stages are not run again)."""
    command = [sys.executable, "-m", "pirtune.train", "data=interactions", f"data.path={db}",
               f"objective={args.objective}", "data.hidden_objective=true", f"name={name}",
               f"generator_ckpt={args.checkpoint}", "progress=false", "logger=csv", *overrides]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PIRTUNE_HOME": str(home)})
    return home / "runs" / name, time.perf_counter() - start


def figure(rows: list[dict], path: Path) -> None:
    """d, pick accuracy and the choice model's predicted Δ against the true Δ, per crowd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 3.6))
    for i, seed in enumerate(sorted({r["seed"] for r in rows})):
        mine, colour = [r for r in rows if r["seed"] == seed], f"C{i}"   # one colour a crowd
        picks = [r["picks"] for r in mine]
        left.plot(picks, [r["cohens_d"] for r in mine], "o-", color=colour,
                  label=f"crowd {seed}")
        middle.plot(picks, [r["pick_accuracy_choice"] for r in mine], "o-", color=colour,
                    label=f"choice model, crowd {seed}")
        middle.plot(picks, [r["pick_accuracy_bins"] for r in mine], "s--", color=colour,
                    alpha=0.6, label=f"binned (C.3), crowd {seed}")
        middle.plot(picks, [r["pick_accuracy_hidden"] for r in mine], ":", color=colour,
                    marker="^", label=f"the hidden objective itself, crowd {seed}")
        right.plot(picks, [r["delta"] for r in mine], "o-", color=colour,
                   label=f"true Δ, crowd {seed}")
        right.errorbar(picks, [r["predicted_delta"] for r in mine],
                       yerr=[[r["predicted_delta"] - r["predicted_low"] for r in mine],
                             [r["predicted_high"] - r["predicted_delta"] for r in mine]],
                       fmt="x:", color=colour, capsize=2, label=f"predicted Δ, crowd {seed}")
    picks = [r["picks"] for r in rows if r["seed"] == rows[0]["seed"]]
    left.axhline(1.0, color="grey", ls="--", lw=1, label="d = 1.0 (from 500)")
    left.axhline(1.3, color="grey", ls=":", lw=1, label="d = 1.3 (from 2,000)")
    middle.axhline(0.25, color="grey", ls=":", lw=1, label="chance")
    left.set(ylabel="Cohen's d (hidden objective)")
    middle.set(ylabel="held-out pick accuracy")
    right.set(ylabel="Δ hidden objective")
    for ax in (left, middle, right):
        ax.set(xscale="log", xlabel="picks")
        ax.set_xticks(picks, [str(p) for p in picks])
        ax.minorticks_off()
    left.legend(frameon=False, fontsize=7)
    right.legend(frameon=False, fontsize=7)
    middle.legend(frameon=False, fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def human_loop(rows: list[dict], run: Path, checkpoint: Path, path: Path) -> None:
    """The README's picture of the human loop, from the largest budget's run ``run``: the
    page, logged rounds, the same latents before and after tuning, and d against picks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.io import ImageReadMode, read_image
    from torchvision.utils import make_grid

    from pirtune.report.figures import latent_grid

    last = rows[-1]
    def fid_recall(name: str) -> str:
        """Realism, and (tuned) the distance to the real scenes tilted to the same gain."""
        if not (run / name).is_file():   # quality.in_loop=false
            return "quality not measured"
        found = json.loads((run / name).read_text())
        tilted = found.get("tilted") if name == "quality.json" else None
        return f"precision {found['generated']['precision']:.2f}" + (
            f", FID to tilted real {tilted['fid']:.1f}" if tilted else "")

    page = read_image(str(REPO / "docs" / "webapp.png"), ImageReadMode.RGB)[:, :580]
    rounds = read_choice_rounds(run / "pir_data")
    firsts = [rounds.sessions.index(sid) for sid in dict.fromkeys(rounds.sessions)][:3]
    shown = []
    for r in firsts:   # the first round of each of three people
        for slot, image in enumerate(rounds.images[rounds.slots[r]]):
            framed = torch.nn.functional.pad(image[:, 3:-3, 3:-3], (3, 3, 3, 3), value=255)
            colour = (255, 255, 255) if slot != int(rounds.picked[r]) else (230, 0, 0)
            for channel, value in enumerate(colour):   # a 3-pixel frame: red on the pick
                plane = framed[channel]
                plane[:3], plane[-3:], plane[:, :3], plane[:, -3:] = value, value, value, value
            shown.append(framed)
    grids = [latent_grid(bundle) for bundle in (checkpoint, run / "tuned.pt")]
    fig = plt.figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 5, width_ratios=[1.1, 1.0, 1.0, 1.0, 1.0])
    panels = [
        (page, "1. A person picks the closest of four\n(pirtune-serve; every pick is logged)"),
        (make_grid(torch.stack(shown), nrow=4, padding=2, pad_value=255),
         f"2. Logged rounds (pick in red) train\na choice model: held-out pick acc.\n"
         f"{last['pick_accuracy_choice']:.2f} (chance 0.25)"),
        (grids[0], f"3. The served generator before…\n{fid_recall('quality_base.json')}"),
        (grids[1], f"…tuned on {last['picks']} picks, served back\nd = {last['cohens_d']:.2f}, "
                   f"{fid_recall('quality.json')}"),
    ]
    for ax, (image, title) in zip(axes, panels, strict=False):
        image = image if image.dtype == torch.uint8 else (image * 255).round().to(torch.uint8)
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    picks = [r["picks"] for r in rows]
    axes[4].plot(picks, [r["cohens_d"] for r in rows], "o-", label="hidden objective's d")
    axes[4].axhline(1.0, color="grey", ls="--", lw=1, label="target d = 1")
    axes[4].set(xscale="log", xlabel="picks in all", ylabel="Cohen's d",
                title="4. d against picks (simulated crowd)")
    axes[4].title.set_fontsize(9)
    axes[4].set_xticks(picks, [str(p) for p in picks])
    axes[4].minorticks_off()
    axes[4].legend(frameon=False, fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)




def markdown(rows: list[dict], args, crowds: dict, command: str) -> str:
    """The table of every crowd and budget, and each target's verdict."""
    made = ", ".join(f"{c['picks']} picks in {c['wall_s']:.0f} s" for c in crowds.values())
    lines = [f"Crowds with hidden objective `{args.objective}` (Bradley–Terry picks at "
             f"temperature {args.temperature} PIR, {args.random_share:.0%} random picks, "
             f"{args.undo_share:.0%} undone and made again), {args.rounds} picks a person, "
             f"through `pirtune-serve` with the generator `{args.checkpoint.name}` over HTTP; "
             f"crowd seeds {', '.join(str(s) for s in sorted(crowds))} "
             f"({made}). Then `{command}` on each crowd's first people's sessions. "
             f"{os.cpu_count()} CPU cores. Made by "
             f"`{' '.join(['python scripts/bench/crowd.py', *sys.argv[1:]])}`.", "",
             "d, p: the hidden objective on fresh samples, tuned against untuned. Precision "
             "is against real scenes (untuned: the generator's own); FID tilted: to the real "
             "scenes tilted by the hidden objective at the same gain (issue 19's yardstick). "
             "Predicted Δ: the choice model's own view in the objective's units (a line fitted "
             "on the judged images), to set beside the true Δ. ECE: expected calibration "
             "error of the pick probabilities, as trained → with the fitted temperature "
             "(cross-fitted on held-out people).", "",
             "| crowd | picks | Δ true | predicted Δ [95 % CI] | ratio | Cohen's d | Welch p "
             "| precision | FID tilted | pick acc. choice / binned / ceiling | ECE | "
             "temperature scale | wall (min) |",
             "|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['picks']} | {r['delta']:+.4f} | {r['predicted_delta']:+.4f} "
            f"[{r['predicted_low']:+.4f}, {r['predicted_high']:+.4f}] | {r['ratio']:.2f} | "
            f"{r['cohens_d']:.2f} | {r['welch_p']:.1e} | {r['precision']:.3f} "
            f"({r['precision_base']:.3f}) | {r['tilted_fid']:.1f} | "
            f"{r['pick_accuracy_choice']:.3f} / {r['pick_accuracy_bins']:.3f} / "
            f"{r['pick_accuracy_hidden']:.3f} | {r['ece_raw']:.3f} → {r['ece']:.3f} | "
            f"{r['scale']:.3f} | {r['wall_s'] / 60:.1f} |")
    lines += ["", "Targets:", ""] + [f"- {line}" for line in verdicts(rows)]
    lines += ["", "![d, pick accuracy and predicted against true Δ by picks](crowd.png)", ""]
    return "\n".join(lines)


def verdicts(rows: list[dict]) -> list[str]:
    """Each of the human loop's targets (issue 21), met or missed, with its figures."""
    out = []
    for seed in sorted({r["seed"] for r in rows}):
        mine = [r for r in rows if r["seed"] == seed]
        falls = [(a["picks"], b["picks"], b["cohens_d"] - a["cohens_d"])
                 for a, b in zip(mine, mine[1:], strict=False)
                 if b["cohens_d"] < a["cohens_d"] - 0.15]
        out.append(f"crowd {seed}, d never falls by more than 0.15 from one budget to the next: "
                   + ("met" if not falls else "missed (" + "; ".join(
                       f"{x} → {y} picks: {d:+.2f}" for x, y, d in falls) + ")"))
        for floor, least in ((1.0, 500), (1.3, 2000)):
            judged = [r for r in mine if r["picks"] >= least]
            short = [r for r in judged if not r["cohens_d"] >= floor]
            out.append(f"crowd {seed}, d ≥ {floor} from {least} picks: " + (
                "not measured (no budget that large)" if not judged else
                "met" if not short else "missed (" + ", ".join(
                    f"{r['picks']}: {r['cohens_d']:.2f}" for r in short) + ")"))
        scored = [r for r in mine if r["precision"] == r["precision"]
                  and r["precision_base"] == r["precision_base"]]   # NaN: quality not run
        low = [r for r in scored if r["precision"] < r["precision_base"] - 0.05]
        out.append(f"crowd {seed}, precision ≥ untuned − 0.05 at every budget: " + (
            "not measured (quality.in_loop=false)" if not scored else
            "met" if not low else "missed (" + ", ".join(
                f"{r['picks']}: {r['precision']:.3f} vs {r['precision_base']:.3f}"
                for r in low) + ")"))
        off = [r for r in mine if not 0.5 <= r["ratio"] <= 2.0]   # NaN counts as off
        out.append(f"crowd {seed}, predicted Δ within 2× of the true Δ: " + (
            "met" if not off else "missed (" + ", ".join(
                f"{r['picks']}: ratio {r['ratio']:.2f}" for r in off) + ")"))
    return out


def crowd(work: Path, args, seed: int) -> tuple[Path, dict]:
    """The crowd of ``seed`` through a real server: its log and what it took (kept in
    ``work``, so a rerun reuses it)."""
    db, done = work / f"crowd-s{seed}.db", work / f"crowd-s{seed}.json"
    if done.is_file():
        return db, json.loads(done.read_text())
    db.unlink(missing_ok=True)   # a crowd cut off is made again whole
    server, base = launch(db, options=["--checkpoint", str(args.checkpoint),
                                       "--sessions-per-client", "100000",
                                       "--sessions-total", "100000"])
    try:
        start = time.perf_counter()
        result = run_crowd(base, compose_objective(args.objective),
                           max(args.picks) // args.rounds, args.rounds,
                           Noise(args.temperature, args.random_share), args.undo_share, seed)
        made = {"picks": result.picks, "undone": result.undone,
                "wall_s": time.perf_counter() - start}
    finally:
        server.kill()
        server.wait()
    done.write_text(json.dumps(made))
    return db, made


def variant(overrides: list[str], smoke: bool) -> str:
    """A short tag of the loop's overrides: runs with other settings on the same crowds get
    their own run folders and rows ("" for the defaults)."""
    own = [o for o in overrides if not smoke or o not in SMOKE]
    return "-" + hashlib.sha1(" ".join(sorted(own)).encode()).hexdigest()[:6] if own else ""


def budget(work: Path, db: Path, seed: int, picks: int, args, overrides: list[str]) -> dict:
    """One crowd's loop on its first picks/rounds people: the row (kept; reused if there)."""
    name = f"crowd-s{seed}-{picks}{variant(overrides, args.smoke)}"
    saved = work / f"row-{name}.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    people = picks // args.rounds
    sub = work / f"crowd-s{seed}-{picks}.db"
    if not sub.is_file():
        first_sessions(db, sub, people)
    run, seconds = loop(sub, work, name, args, [f"seed={seed}", *overrides])
    evaluation = json.loads((run / "evaluation.json").read_text())
    result = json.loads((run / "interactions_evaluation.json").read_text())
    estimator = json.loads((run / "estimator_report.json").read_text())
    val_fraction = next((float(o.split("=", 1)[1]) for o in overrides
                         if o.startswith("estimator.val_fraction=")), 0.2)
    scratch = work / f"work-{name}"   # the binned estimator's data: made again whole
    shutil.rmtree(scratch, ignore_errors=True)
    binned = binned_accuracy(run / "pir_data", val_fraction, seed, args.epochs, 32, scratch)
    ceiling = hidden_accuracy(run / "pir_data", val_fraction, seed,
                              compose_objective(args.objective))
    change = evaluation["change"]
    units = result["hidden_objective"]["model_view_in_objective_units"]
    calibration = estimator.get("calibration") or {}

    def quality(name: str) -> dict:
        found = run / name   # absent under quality.in_loop=false
        return json.loads(found.read_text()) if found.is_file() else {}

    after, before = quality("quality.json"), quality("quality_base.json")
    nan = float("nan")
    row = {"seed": seed, "picks": picks, "people": people, "delta": change["delta"],
           "cohens_d": change["cohens_d"], "welch_p": change["welch"]["p"],
           "predicted_delta": units["delta"], "predicted_low": units["low"],
           "predicted_high": units["high"],
           "ratio": units["delta"] / change["delta"] if change["delta"] else nan,
           "precision": after.get("generated", {}).get("precision", nan),
           "precision_base": before.get("generated", {}).get("precision", nan),
           "recall": after.get("generated", {}).get("recall", nan),
           "fid": after.get("generated", {}).get("fid", nan),
           "tilted_fid": (after.get("tilted") or {}).get("fid", nan),
           "pick_accuracy_choice": estimator["pick_accuracy"],
           "pick_accuracy_bins": binned["pick_accuracy"], "pick_accuracy_hidden": ceiling,
           "held_out_rounds": estimator["rounds"], "scale": calibration.get("scale", nan),
           "ece_raw": calibration.get("ece_raw", nan), "ece": calibration.get("ece", nan),
           "model_reward_delta": result["model_view"]["delta"], "wall_s": seconds}
    saved.write_text(json.dumps(row))
    print(f"crowd bench: crowd {seed}, {picks} picks: d {change['cohens_d']:.2f}, "
          f"Δ {change['delta']:+.4f} (predicted {units['delta']:+.4f}), precision "
          f"{row['precision']:.3f}, pick accuracy {estimator['pick_accuracy']:.3f} vs binned "
          f"{binned['pick_accuracy']:.3f}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="color_blue")
    parser.add_argument("--picks", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="one crowd per seed (its people, and the loop's seed)")
    parser.add_argument("--rounds", type=int, default=25, help="picks a person makes")
    parser.add_argument("--temperature", type=float, default=0.01,
                        help="the people's Bradley–Terry temperature, PIR units (0.01: the "
                             "hidden objective itself ranks a round's pick first about 40 %% "
                             "of the time; at 0.05, 30 %%, near chance)")
    parser.add_argument("--random-share", type=float, default=0.0)
    parser.add_argument("--undo-share", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=20, help="the binned estimator's")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_GENERATOR)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "crowd-bench",
                        help="the crowds' logs, runs and finished rows (a rerun continues)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "crowd",
                        help="the table, plot and CSV's path without suffix; the human-loop "
                             "picture goes to docs/human_loop.png for the default, else "
                             "beside them as <out>_human_loop.png")
    parser.add_argument("--smoke", action="store_true",
                        help="two tiny budgets, one crowd, a minimal loop, in a temp folder")
    args, overrides = parser.parse_known_args()
    if args.smoke:
        args.picks, args.rounds, args.epochs, args.seeds = [8, 16], 4, 1, [0]
        args.work = Path(tempfile.mkdtemp(prefix="crowd-smoke-"))
        args.out = args.work / "crowd"
        overrides = [*SMOKE, *overrides]
    if any(p % args.rounds for p in args.picks):
        parser.error(f"--picks {args.picks} must be multiples of --rounds {args.rounds}")
    args.picks = sorted(args.picks)
    args.work.mkdir(parents=True, exist_ok=True)
    crowds, rows = {}, []
    for seed in args.seeds:
        db, crowds[seed] = crowd(args.work, args, seed)
        rows += [budget(args.work, db, seed, picks, args, overrides) for picks in args.picks]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    command = " ".join(["pirtune-train data=interactions data.path=<log>",
                        f"objective={args.objective} data.hidden_objective=true", *overrides])
    args.out.with_suffix(".md").write_text(markdown(rows, args, crowds, command))
    figure(rows, args.out.with_suffix(".png"))
    first = args.seeds[0]
    largest = (args.work / "runs" /
               f"crowd-s{first}-{args.picks[-1]}{variant(overrides, args.smoke)}")
    default = args.out == parser.get_default("out")   # the README's picture
    picture = (REPO / "docs" / "human_loop.png" if default
               else args.out.with_name(f"{args.out.name}_human_loop.png"))
    human_loop([r for r in rows if r["seed"] == first], largest, args.checkpoint, picture)
    print(args.out.with_suffix(".md").read_text())
    print(f"written: {args.out}.{{csv,md,png}} and {picture}; logs and runs stay in {args.work}")


if __name__ == "__main__":
    main()
