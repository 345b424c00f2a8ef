"""A simulated crowd through the real web app, then the loop on its picks: d against picks.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench/crowd.py     # docs/bench/crowd.{csv,md,png}
    python scripts/bench/crowd.py --smoke                     # seconds-sized, into a temp dir

Starts ``pirtune-serve`` with the shipped generator in a fresh PIRTUNE_HOME,
lets ``--people`` simulated people (hidden objective ``--objective``,
Bradley–Terry picks at ``--temperature``, ``--random-share`` random picks,
``--undo-share`` undos) make ``--rounds`` picks each over HTTP
(``pirtune.webapp.crowd``), then for each budget in ``--picks`` keeps the
first budget/rounds people's sessions (a copy of the log) and runs
``pirtune-train data=interactions ... data.hidden_objective=true``: the choice
model, tuning (``tune=pir_anchored`` unless a ``tune=`` override is given: the
choice model is one network, so the stay-close term is its guard), and the
hidden objective's Welch's t and Cohen's d. Beside it,
on the same export and the same held-out sessions, a binned PIR estimator
(C.3) is trained on the training sessions' picks, and both are scored by
held-out pick accuracy. Extra key=value arguments go to pirtune-train.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
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
    """``pirtune-train data=interactions`` on ``db``; its run directory and wall time."""
    command = [sys.executable, "-m", "pirtune.train", "data=interactions", f"data.path={db}",
               f"objective={args.objective}", "data.hidden_objective=true", f"name={name}",
               f"seed={args.seed}", "progress=false", "logger=csv", *overrides]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PIRTUNE_HOME": str(home)})
    return home / "runs" / name, time.perf_counter() - start


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = [r["picks"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(picks, [r["cohens_d"] for r in rows], "o-", label="tuned vs untuned")
    left.axhline(1.0, color="grey", ls="--", lw=1, label="target d = 1")
    left.set(xscale="log", xlabel="picks", ylabel="Cohen's d (hidden objective)")
    left.legend(frameon=False)
    right.plot(picks, [r["pick_accuracy_choice"] for r in rows], "o-", label="choice model")
    right.plot(picks, [r["pick_accuracy_bins"] for r in rows], "s-", label="binned (C.3)")
    right.plot(picks, [r["pick_accuracy_hidden"] for r in rows], "k:", marker="^",
               label="the hidden objective itself")
    right.axhline(0.25, color="grey", ls=":", lw=1, label="chance")
    right.set(xscale="log", xlabel="picks", ylabel="held-out pick accuracy")
    right.legend(frameon=False)
    for ax in (left, right):
        ax.set_xticks(picks, [str(p) for p in picks])
        ax.minorticks_off()
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
        if not (run / name).is_file():   # quality.in_loop=false
            return "quality not measured"
        found = json.loads((run / name).read_text())["generated"]
        return f"FID {found['fid']:.1f}, recall {found['recall']:.2f}"

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


def markdown(rows: list[dict], args, crowd: dict, command: str) -> str:
    lines = [f"A crowd with hidden objective `{args.objective}` (Bradley–Terry picks at "
             f"temperature {args.temperature} PIR, {args.random_share:.0%} random picks, "
             f"{args.undo_share:.0%} undone and made again), {args.rounds} picks a person, "
             f"through `pirtune-serve` with the shipped generator over HTTP "
             f"({crowd['picks']} picks in {crowd['wall_s']:.0f} s); then `{command}` on the "
             f"first people's sessions. {crowd['cores']} CPU cores, load average "
             f"{crowd['load'][0]:.1f} before and {crowd['load'][1]:.1f} after. Made by "
             f"`{' '.join(['python scripts/bench/crowd.py', *sys.argv[1:]])}`.", "",
             "| picks | people | ΔPIR | Cohen's d | Welch p | FID | recall | pick acc. choice | "
             "pick acc. binned | pick acc. hidden objective | held-out rounds | "
             "model's own Δ [95 % CI] | wall (min) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['picks']} | {r['people']} | {r['delta']:+.3f} | "
                     f"{r['cohens_d']:.2f} | {r['welch_p']:.1e} | {r['fid']:.1f} | "
                     f"{r['recall']:.3f} | {r['pick_accuracy_choice']:.3f} | "
                     f"{r['pick_accuracy_bins']:.3f} | {r['pick_accuracy_hidden']:.3f} | "
                     f"{r['held_out_rounds']} | {r['model_delta']:+.3f} "
                     f"[{r['model_low']:+.3f}, {r['model_high']:+.3f}] | "
                     f"{r['wall_s'] / 60:.1f} |")
    last = rows[-1]
    met = [r for r in rows if r["cohens_d"] >= 1.0 and r["welch_p"] < 1e-3]
    reached = (f"met first at {met[0]['picks']} picks (d = {met[0]['cohens_d']:.2f}, "
               f"p = {met[0]['welch_p']:.1e})" if met else "missed at every budget")
    beats = all(r["pick_accuracy_choice"] > r["pick_accuracy_bins"] for r in rows)
    lines += ["", f"Target d ≥ 1.0 and p < 0.001 from at most {last['picks']} picks: {reached}; "
                  f"at {last['picks']} picks d = {last['cohens_d']:.2f}, "
                  f"p = {last['welch_p']:.1e}. The choice model's held-out pick accuracy "
                  f"beats the binned estimator's at every budget: {'yes' if beats else 'no'}.",
              "", "![d and pick accuracy against picks](crowd.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="color_blue")
    parser.add_argument("--picks", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--rounds", type=int, default=25, help="picks a person makes")
    parser.add_argument("--temperature", type=float, default=0.01,
                        help="the people's Bradley–Terry temperature, PIR units (0.01: the "
                             "hidden objective itself ranks a round's pick first about 40 %% "
                             "of the time; at 0.05, 30 %%, near chance)")
    parser.add_argument("--random-share", type=float, default=0.0)
    parser.add_argument("--undo-share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20, help="the binned estimator's")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_GENERATOR)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "crowd",
                        help="the table, plot and CSV's path without suffix; the human-loop "
                             "picture goes to docs/human_loop.png for the default, else "
                             "beside them as <out>_human_loop.png")
    parser.add_argument("--smoke", action="store_true",
                        help="two tiny budgets, a minimal loop, outputs in a temp folder")
    args, overrides = parser.parse_known_args()
    if not any(o.startswith("tune=") for o in overrides):
        overrides = ["tune=pir_anchored", *overrides]   # the choice model has no ensemble
    if args.smoke:
        args.picks, args.rounds, args.epochs = [8, 16], 4, 1
        args.out = Path(tempfile.mkdtemp(prefix="crowd-smoke-")) / "crowd"
        overrides = [*SMOKE, *overrides]
    if any(p % args.rounds for p in args.picks):
        parser.error(f"--picks {args.picks} must be multiples of --rounds {args.rounds}")
    home = Path(tempfile.mkdtemp(prefix="crowd-home-"))
    db = home / "crowd.db"
    load = [os.getloadavg()[0]]
    server, base = launch(db, options=["--checkpoint", str(args.checkpoint),
                                       "--sessions-per-client", "100000",
                                       "--sessions-total", "100000"])
    try:
        start = time.perf_counter()
        objective = compose_objective(args.objective)
        result = run_crowd(base, objective,
                           max(args.picks) // args.rounds, args.rounds,
                           Noise(args.temperature, args.random_share), args.undo_share,
                           args.seed)
        crowd = {"picks": result.picks, "undone": result.undone,
                 "wall_s": time.perf_counter() - start}
    finally:
        server.kill()
        server.wait()
    rows = []
    for picks in sorted(args.picks):
        people = picks // args.rounds
        sub = home / f"crowd-{picks}.db"
        first_sessions(db, sub, people)
        run, seconds = loop(sub, home, f"crowd-{picks}", args, overrides)
        evaluation = json.loads((run / "evaluation.json").read_text())
        result = json.loads((run / "interactions_evaluation.json").read_text())
        estimator = json.loads((run / "estimator_report.json").read_text())
        val_fraction = next((float(o.split("=", 1)[1]) for o in overrides
                             if o.startswith("estimator.val_fraction=")), 0.2)
        binned = binned_accuracy(run / "pir_data", val_fraction, args.seed, args.epochs,
                                 32, home / f"work-{picks}")
        ceiling = hidden_accuracy(run / "pir_data", val_fraction, args.seed, objective)
        change, view = evaluation["change"], result["model_view"]
        found = run / "quality.json"   # absent under quality.in_loop=false
        quality = json.loads(found.read_text())["generated"] if found.is_file() else {}
        rows.append({"picks": picks, "people": people, "delta": change["delta"],
                     "fid": quality.get("fid", float("nan")),
                     "recall": quality.get("recall", float("nan")),
                     "cohens_d": change["cohens_d"], "welch_t": change["welch"]["t"],
                     "welch_p": change["welch"]["p"], "significant": change["significant"],
                     "pick_accuracy_choice": estimator["pick_accuracy"],
                     "pick_accuracy_bins": binned["pick_accuracy"],
                     "pick_accuracy_hidden": ceiling,
                     "held_out_rounds": estimator["rounds"], "model_delta": view["delta"],
                     "model_low": view["low"], "model_high": view["high"], "wall_s": seconds})
        print(f"crowd bench: {picks} picks: d {change['cohens_d']:.2f}, p "
              f"{change['welch']['p']:.1e}, pick accuracy choice {estimator['pick_accuracy']:.3f}"
              f" vs binned {binned['pick_accuracy']:.3f}", flush=True)
    load.append(os.getloadavg()[0])
    crowd |= {"load": load, "cores": len(os.sched_getaffinity(0))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    command = " ".join(["pirtune-train data=interactions data.path=<log>",
                        f"objective={args.objective} data.hidden_objective=true", *overrides])
    args.out.with_suffix(".md").write_text(markdown(rows, args, crowd, command))
    figure(rows, args.out.with_suffix(".png"))
    largest = home / "runs" / f"crowd-{max(args.picks)}"
    default = args.out == parser.get_default("out")   # the README's picture
    picture = (REPO / "docs" / "human_loop.png" if default
               else args.out.with_name(f"{args.out.name}_human_loop.png"))
    human_loop(rows, largest, args.checkpoint, picture)
    print(args.out.with_suffix(".md").read_text())
    print(f"written: {args.out}.{{csv,md,png}} and {picture}; the log and runs stay in {home}")


if __name__ == "__main__":
    main()
