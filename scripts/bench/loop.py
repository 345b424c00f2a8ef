"""The PIR loop as `make run` runs it: its wall time and its evaluation figures.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench/loop.py     # writes docs/bench/loop.{json,md}

It also writes the README's picture, ``docs/loop_<objective>.png``: the
evaluation's samples before (left) and after (right) tuning, side by side.

Runs ``pirtune-train objective=<objective>`` (the default command of
``make run``, with the shipped generator and the CPU defaults) in a fresh
PIRTUNE_HOME, so nothing is resumed, and records how long the command took
and what the evaluation found (ΔPIR, Cohen's d, Welch's t-test). Extra
arguments of the form key=value are passed to pirtune-train.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, read_image, write_png

REPO = Path(__file__).resolve().parents[2]


def before_after(before: Path, after: Path, out: Path, gap: int = 16) -> None:
    """The two evaluation grids side by side on white, enlarged 2× (nearest neighbour)."""
    left, right = (read_image(str(p), ImageReadMode.RGB) for p in (before, after))
    height = max(left.shape[1], right.shape[1])
    canvas = torch.full((3, height, left.shape[2] + gap + right.shape[2]), 255, dtype=torch.uint8)
    canvas[:, :left.shape[1], :left.shape[2]] = left
    canvas[:, :right.shape[1], left.shape[2] + gap:] = right
    canvas = canvas.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    write_png(canvas, str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="color_blue")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "loop")
    args, overrides = parser.parse_known_args()
    command = [str(Path(sys.executable).with_name("pirtune-train")),
               f"objective={args.objective}", *overrides]
    with tempfile.TemporaryDirectory() as home:
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "PIRTUNE_HOME": home})
        seconds = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        (run,) = (Path(home) / "runs").glob(f"cpu-{args.objective}-*")  # <scale>-<label>-<hash>
        evaluation = json.loads((run / "evaluation.json").read_text())
        picture = REPO / "docs" / f"loop_{args.objective}.png"
        before_after(run / "eval_before.png", run / "eval_after.png", picture)
    change = evaluation["change"]
    result = {
        "command": " ".join(["pirtune-train", *command[1:]]),
        "machine": {"cores_usable": len(os.sched_getaffinity(0)), "cores": os.cpu_count(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "python": platform.python_version(), "torch": torch.__version__},
        "wall_s": round(seconds, 1),
        # other jobs on the machine (1-minute load average before and after)
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "n_before": change["n_before"], "n_after": change["n_after"],
        "mean_before": change["mean_before"], "mean_after": change["mean_after"],
        "delta": change["delta"], "cohens_d": change["cohens_d"],
        "welch": change["welch"], "significant": change["significant"],
        "predicted_delta": evaluation["predicted"]["delta"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    m = result["machine"]
    args.out.with_suffix(".md").write_text(
        f"`{result['command']}` from the shipped generator in a fresh run directory, "
        f"on {m['cores_usable']} usable CPU core(s) of {m['cores']} (torch {m['torch']}, "
        f"OMP_NUM_THREADS={m['omp_num_threads']}), possibly shared with other jobs. "
        "Made by `python scripts/bench/loop.py`.\n\n"
        "| figure | value |\n|---|---:|\n"
        f"| wall time of the command | {seconds / 60:.1f} min |\n"
        f"| load average before, after | {load_before:.1f}, {load_after:.1f} |\n"
        f"| mean PIR before → after ({change['n_before']} + {change['n_after']} samples) "
        f"| {change['mean_before']:.3f} → {change['mean_after']:.3f} |\n"
        f"| ΔPIR | {change['delta']:.3f} |\n"
        f"| Cohen's d | {change['cohens_d']:.2f} |\n"
        f"| Welch's t, p | {change['welch']['t']:.1f}, {change['welch']['p']:.0e} |\n"
        f"| the estimator's predicted ΔPIR | {result['predicted_delta']:.3f} |\n")
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
