"""HL-Gauss against one-hot estimator targets, on dense and on sparse PIR data.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench/hl_gauss.py   # docs/bench/hl_gauss.{csv,md}
    python scripts/bench/hl_gauss.py --smoke                   # a minute's check, temp folder

The loop on ``--objective`` (color_blue) as one Hydra multirun over
``collect.impressions`` (dense: the CPU default 1000 impressions an image; sparse:
20, about what the web app gives an image) × ``estimator.targets`` (onehot, C.3's;
hl_gauss, a Gaussian over the bins as wide as each image's binomial standard error,
Farebrother et al. 2024). Every job collects its own data with the same seed, so
both targets of one density learn from the same impressions. For each job: the
estimator's Spearman correlation with the observed and the true PIR on its held-out
images, the tuned generator's Cohen's d, and the proxy − gold gap at the end of
tuning (the tuning watch's last check).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMOKE = ("collect.num_images=64", "collect.batch_size=64", "estimator.epochs=1",
         "estimator.batch_size=16", "tune.steps=4", "tune.eval_every=2", "tune.eval_samples=32",
         "tune.checkpoint_every=2", "evaluate.num_samples=32", "evaluate.batch_size=32",
         "data.num_images=64", "data.cache_dir=null")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="color_blue")
    parser.add_argument("--impressions", type=int, nargs="+", default=[1000, 20])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "hl_gauss")
    parser.add_argument("--smoke", action="store_true")
    args, overrides = parser.parse_known_args()
    home = Path(tempfile.mkdtemp(prefix="hl-gauss-"))
    if args.smoke:
        overrides = [*SMOKE, *overrides]
        args.out = home / "hl_gauss"
    command = [sys.executable, "-m", "pirtune.train", "-m", f"objective={args.objective}",
               f"collect.impressions={','.join(map(str, args.impressions))}",
               "estimator.targets=onehot,hl_gauss", "quality.in_loop=false",
               # Quoted: Hydra's override grammar takes interpolations in a value only so.
               "name='hl-${collect.impressions}-${estimator.targets}'",
               "hydra/launcher=local", f"hydra.launcher.n_jobs={args.jobs}",
               f"hydra.sweep.dir={home}/multirun", "logger=csv", "progress=false", *overrides]
    start = time.perf_counter()
    env = {**os.environ, "PIRTUNE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env)
    rows = []
    for impressions in args.impressions:
        for targets in ("onehot", "hl_gauss"):
            run = home / "runs" / f"hl-{impressions}-{targets}"
            evaluation = json.loads((run / "evaluation.json").read_text())
            report = json.loads((run / "estimator_report.json").read_text())
            with (run / "tune_watch.csv").open() as f:
                last = list(csv.DictReader(f))[-1]
            rows.append({"impressions": impressions, "targets": targets,
                         "spearman_observed": report["spearman_observed"],
                         "spearman_true": report["spearman_true"], "mae": report["mae"],
                         "cohens_d": evaluation["change"]["cohens_d"],
                         "proxy_end": float(last["proxy_pir"]),
                         "gold_end": float(last["gold_pir"]), "gap_end": float(last["gap"])})
    rows.sort(key=lambda r: (-r["impressions"], r["targets"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# Estimator targets: HL-Gauss against one-hot ({args.objective})", "",
             f"`python scripts/bench/hl_gauss.py{' --smoke' if args.smoke else ''}`, "
             f"{(time.perf_counter() - start) / 60:.0f} minutes on {os.cpu_count()} cores. "
             "Spearman on the estimator's held-out images; the gap is proxy − gold PIR at "
             "the tuning watch's last check (tune.eval_samples fixed latents, 256 by default).", "",
             "| impressions an image | targets | Spearman (observed) | Spearman (true) | MAE | "
             "d after tuning | proxy end | gold end | gap end |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['impressions']} | {r['targets']} | {r['spearman_observed']:.3f} | "
              f"{r['spearman_true']:.3f} | {r['mae']:.4f} | {r['cohens_d']:.2f} | "
              f"{r['proxy_end']:.4f} | {r['gold_end']:.4f} | {r['gap_end']:+.4f} |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written: {args.out}.{{csv,md}}; runs in {home}")


if __name__ == "__main__":
    main()
