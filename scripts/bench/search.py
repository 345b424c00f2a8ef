"""Four-choice search benchmark: rounds to the target for simulated people.

For n in {8, 16, 32, 64}, six kinds of people (exact; Thurstone/probit people
who add N(0, σ²) to each distance, σ = 0.1·R, 0.5·R, or 0.2 × their distance
from the candidates' centre; Bradley–Terry noise at temperature 0.1·R; 10 %
random picks) and at least 100 seeded targets each,
it runs AxisSearch (the paper), PreferenceSearch (Bayesian), RandomSearch
(pick-best among four random directions) until the current point lies within
R = 0.05·√n of the target (cap 1000 rounds), and reports the median and
interquartile range of the rounds, the share of targets reached, and the
median distance after 10, 20 and 50 rounds, beside the information-theoretic
lower bound n·log₂(R0/R)/2 with R0 = √(2n) (``pirtune.search.bound``).

The start is a draw from N(0, I) and the target a uniform point on the
sphere of radius √n, where nearly all of the latent prior's mass lies. Writes ``<out>/search.csv``, ``<out>/search.md`` (the
README's table) and ``<out>/search.png``.

    OMP_NUM_THREADS=1 python scripts/bench/search.py --out docs/bench --targets 100
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from matplotlib.figure import Figure

from pirtune.search import (
    AxisSearch,
    PreferenceSearch,
    RandomSearch,
    SimulatedPerson,
    rounds_lower_bound,
    satisfaction_radius,
    simulate,
)

CAP = 1000
CHECKPOINTS = (10, 20, 50)
SEARCHES = {
    "preference": lambda start, seed: PreferenceSearch(start),
    "axis": lambda start, seed: AxisSearch(start, seed=seed),
    "random": lambda start, seed: RandomSearch(start, seed=seed),
}
PEOPLE = {
    "exact": lambda radius: {},
    "probit 0.1R": lambda radius: {"probit_sd": 0.1 * radius},
    "probit 0.5R": lambda radius: {"probit_sd": 0.5 * radius},
    "probit 0.2·distance": lambda radius: {"probit_relative": 0.2},
    "bradley-terry 0.1R": lambda radius: {"temperature": 0.1 * radius},
    "10% random": lambda radius: {"random_share": 0.1},
}


def one(n: int, search: str, person: str, seed: int) -> dict[str, float]:
    """One seeded session; rounds to R (CAP when never) and distances at the checkpoints."""
    rng = np.random.default_rng(seed)
    start, direction = rng.standard_normal(n), rng.standard_normal(n)
    target = direction / np.linalg.norm(direction) * math.sqrt(n)
    radius = satisfaction_radius(n)
    session = simulate(SEARCHES[search](start, seed),
                       SimulatedPerson(target, seed=seed, **PEOPLE[person](radius)),
                       radius, max_rounds=CAP, min_rounds=max(CHECKPOINTS))
    reached = session.rounds_to_target
    row = {"rounds": CAP if reached is None else reached, "reached": reached is not None,
           "stalled": bool(session.stalled)}
    for r in CHECKPOINTS:  # a stalled session stays where it stalled
        row[f"distance_{r}"] = float(session.distances[min(r, len(session.distances) - 1)])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    summary = []
    for n in args.dims:
        radius = satisfaction_radius(n)
        bound = rounds_lower_bound(n, math.sqrt(2 * n), radius)
        for person in PEOPLE:
            for search in SEARCHES:
                started = time.perf_counter()
                rows = Parallel(n_jobs=args.jobs)(delayed(one)(n, search, person, seed)
                                                  for seed in range(args.targets))
                rounds = np.array([row["rounds"] for row in rows])
                q1, median, q3 = np.percentile(rounds, [25, 50, 75])
                summary.append({
                    "n": n, "person": person, "search": search, "targets": args.targets,
                    "median_rounds": median, "q1": q1, "q3": q3,
                    "reached": float(np.mean([row["reached"] for row in rows])),
                    "within_2.5x_bound": float(np.mean(rounds <= 2.5 * bound)),
                    "stalled": float(np.mean([row["stalled"] for row in rows])),
                    **{f"median_distance_{r}": float(np.median([row[f"distance_{r}"]
                                                                for row in rows]))
                       for r in CHECKPOINTS},
                    "bound": round(bound, 1), "radius": radius,
                    "seconds": round(time.perf_counter() - started, 1),
                })
                print(f"n={n:3d} {person:20s} {search:10s} median {median:6.1f} "
                      f"[{q1:.0f}, {q3:.0f}] reached {summary[-1]['reached']:.0%} "
                      f"(bound {bound:.1f})", flush=True)

    with open(args.out / "search.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    lines = ["| n | person | search | median rounds to R [IQR] | × bound | reached | within "
             "2.5× bound | stalled | distance after 10 / 20 / 50 | bound |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        distances = " / ".join(f"{s[f'median_distance_{r}']:.2f}" for r in CHECKPOINTS)
        lines.append(f"| {s['n']} | {s['person']} | {s['search']} | {s['median_rounds']:.0f} "
                     f"[{s['q1']:.0f}, {s['q3']:.0f}] | {s['median_rounds'] / s['bound']:.2f} | "
                     f"{s['reached']:.0%} | {s['within_2.5x_bound']:.0%} | {s['stalled']:.0%} | "
                     f"{distances} | {s['bound']:.0f} |")
    (args.out / "search.md").write_text("\n".join(lines) + "\n")

    fig = Figure(figsize=(4 * len(args.dims), 3.5))
    for i, n in enumerate(args.dims):
        ax = fig.add_subplot(1, len(args.dims), i + 1)
        rows = [s for s in summary if s["n"] == n]
        for j, search in enumerate(SEARCHES):
            values = [s["median_rounds"] for s in rows if s["search"] == search]
            ax.bar(np.arange(len(PEOPLE)) + 0.27 * (j - 1), values, width=0.27, label=search)
        ax.axhline(rows[0]["bound"], color="k", linestyle="--", linewidth=1, label="bound")
        ax.set_xticks(range(len(PEOPLE)), list(PEOPLE), fontsize=7, rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_title(f"n = {n}, R = {rows[0]['radius']:.2f}")
        ax.set_ylabel("median rounds to R")
    fig.axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "search.png", dpi=120)
    print(f"wrote {args.out / 'search.csv'}, search.md and search.png")


if __name__ == "__main__":
    main()
