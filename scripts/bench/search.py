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

Beside the rounds, each cell reports how honest ``done`` is: the share of
runs whose estimate lay within R when ``done`` first turned true, and the
median distance (in R) and rounds then; and for ``PreferenceSearch`` when it
first said it was no longer ``progressing``, and how far it was then. Each
run goes on until ``done`` (or the cap), past reaching R.

The start is a draw from N(0, I) and the target a uniform point on the
sphere of radius √n, where nearly all of the latent prior's mass lies.
Writes ``<out>/search.csv``, ``<out>/search.md`` (the README's table comes
from it) and ``<out>/search.png``; ``--cost`` times AxisSearch's rounds at
n = 512 instead (``<out>/search_cost.json``).

``--visible`` runs the search a person sees instead: the shipped generator,
the web app's sessions (8 GANSpace directions, its start, prior and step
schedule), targets drawn from the prior, 40 rounds; each search as it was
(steps in latent units, the median in the middle) and with visible steps
(``pirtune.search.visible``: a JVP metric with the JND floor), the
learning search also varying the last pick; people who pick the nearest
candidate in the search's coordinates, in pixels, or in pixels with a
just-noticeable difference of 4/255. Per round it reports the least visible
difference between two candidates and the candidates' mean difference from
the middle image (8-bit pixels, /255), and the share of people whose last
pick lies within R of their target, or looks the same as it to them
(``<out>/search_visible.csv``, ``.md``).

    OMP_NUM_THREADS=1 python scripts/bench/search.py --out docs/bench --targets 100
    OMP_NUM_THREADS=1 python scripts/bench/search.py --visible --targets 40
"""

from __future__ import annotations

import argparse
import csv
import json
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
                       radius, max_rounds=CAP, min_rounds=max(CHECKPOINTS), until_done=True)
    reached, done = session.rounds_to_target, session.done
    row = {"rounds": CAP if reached is None else reached, "reached": reached is not None,
           "stalled": bool(session.stalled), "done": done,
           "done_distance": (np.nan if done is None
                             else float(session.distances[done]) / radius),
           "slowed": session.slowed,
           "slowed_distance": (np.nan if session.slowed is None
                               else float(session.distances[session.slowed]) / radius)}
    for r in CHECKPOINTS:  # a stalled session stays where it stalled
        row[f"distance_{r}"] = float(session.distances[min(r, len(session.distances) - 1)])
    return row


def done_honesty(rows: list[dict]) -> dict[str, float]:
    """How honest ``done`` was: among runs where it turned true, the share within R then,
    the median distance then (in R) and the median rounds; and the share where it never did."""
    done = [row for row in rows if row["done"] is not None]
    distances = np.array([row["done_distance"] for row in done])
    return {"done_within_R": float(np.mean(distances <= 1)) if done else np.nan,
            "done_median_distance": float(np.median(distances)) if done else np.nan,
            "done_median_rounds": (float(np.median([row["done"] for row in done]))
                                   if done else np.nan),
            "done_never": 1 - len(done) / len(rows),
            **slowing(rows)}


def slowing(rows: list[dict]) -> dict[str, float]:
    """When ``progressing`` first turned false (``PreferenceSearch``): the share of runs
    where it did, and the median distance (in R) and rounds then."""
    slowed = [row for row in rows if row["slowed"] is not None]
    return {"slowed": len(slowed) / len(rows),
            "slowed_median_distance": (float(np.median([row["slowed_distance"]
                                                        for row in slowed]))
                                       if slowed else np.nan),
            "slowed_median_rounds": (float(np.median([row["slowed"] for row in slowed]))
                                     if slowed else np.nan)}


def cost(out: Path, n: int = 512, rounds: int = 3000) -> None:
    """AxisSearch's time per round as its cuts accumulate (a noisy person, n = 512)."""
    rng = np.random.default_rng(0)
    search = AxisSearch(rng.standard_normal(n), seed=0)
    person = SimulatedPerson(rng.standard_normal(n), temperature=0.3, seed=0)
    windows, started, done = {}, time.perf_counter(), 0
    for r in range(1, rounds + 1):
        proposal = search.propose()
        if proposal.stalled:
            break
        search.choose(person.pick(proposal.points))
        if r in (100, 1000, 2000, 3000):
            windows[r] = round((time.perf_counter() - started) / (r - done) * 1000, 2)
            started, done = time.perf_counter(), r
    result = {"n": n, "ms_per_round_up_to": windows, "cuts_kept": len(search.offsets),
              "max_cuts": search.max_cuts, "rounds": search.rounds}
    (out / "search_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    print(result)

VISIBLE_ROUNDS = 40
VISIBLE_K = 8
VISIBLE_PEOPLE = ("exact", "pixels", "pixels, JND 4/255")


def visible_variants(floors: list[float]) -> dict[str, dict[str, dict]]:
    """Each search as the web app ran it before visible steps, and with them (a floor
    between the nearest two candidates each, in /255; the learning search also varying
    the last pick)."""
    from pirtune.webapp.app import FLOOR

    return {"preference": {"latent steps": {},
                           **{f"visible, floor {f:g}": {"floor": f} for f in floors},
                           f"visible, floor {FLOOR:g}, pick varied": {"floor": FLOOR,
                                                                      "pick_centre": True}},
            "axis": {"latent steps": {}, f"visible, floor {FLOOR:g}": {"floor": FLOOR}}}


def visible_one(generator, basis: np.ndarray, search: str, variant: str, options: dict,
                person: str, seed: int) -> dict:
    """One web-app session of ``VISIBLE_ROUNDS`` rounds in the shipped generator's images."""
    import torch

    from pirtune.models.bundle import draw_latents
    from pirtune.search import PixelMetric, SearchSpace
    from pirtune.search.visible import pixel_difference
    from pirtune.webapp.app import JND, MIN_STEP, _preference_prior, _search, _visible

    cls = seed % 2
    origin = draw_latents(generator, torch.tensor([cls]),
                          torch.Generator().manual_seed(seed))[0].double().numpy()
    space = SearchSpace(origin, basis)
    metric = PixelMetric(generator, space, cls)
    prior = {**_preference_prior(origin, basis), "pick_centre": options.get("pick_centre", False)}
    start = np.array(prior["start"]) if search == "preference" else np.zeros(len(basis))
    settings = {"algorithm": search, "seed": seed, "origin": origin.tolist(),
                "basis": basis.tolist(), "preference": prior, "min_step": MIN_STEP}
    if "floor" in options:
        settings["visible"] = _visible(metric, start, options["floor"])
        if "min_visible" in options:
            settings["visible"]["min_step"] = (options["min_visible"]
                                               / settings["visible"]["per_unit"])
    searcher = _search(settings, metric)
    # The person wants a typical image: a draw from the web app's prior around its start.
    target = np.array(prior["start"]) + np.random.default_rng([seed, 1]).standard_normal(
        len(basis))
    cache: dict[bytes, torch.Tensor] = {}

    def images(points: np.ndarray) -> torch.Tensor:
        points = np.atleast_2d(points)
        missing = [p for p in points if p.tobytes() not in cache]
        if missing:
            for p, image in zip(missing, metric.images(np.stack(missing)), strict=True):
                cache[p.tobytes()] = image
        return torch.stack([cache[p.tobytes()] for p in points])

    def pixels(points: np.ndarray) -> np.ndarray:   # what a pixel-judging person compares
        return 255 * images(points).flatten(1).double().numpy()

    kwargs = {} if person == "exact" else {"features": pixels}
    if "JND" in person:
        kwargs["jnd"] = JND
    judge = SimulatedPerson(target, seed=seed, **kwargs)
    radius = satisfaction_radius(len(basis))
    target_image = images(target)

    def arrived(point: np.ndarray) -> bool:
        return bool(np.linalg.norm(point - target) <= radius
                    or pixel_difference(images(point), target_image)[0] < JND)

    row = {"search": search, "variant": variant, "person": person, "seed": seed,
           "reached": 0 if arrived(searcher.picked) else None,
           "estimate_reached": 0 if arrived(searcher.current) else None}
    for round_ in range(1, VISIBLE_ROUNDS + 1):
        proposal = searcher.propose()
        if proposal.stalled:
            break
        shown = images(proposal.points)
        middle = images(searcher.picked if "floor" in options else searcher.current)
        row[f"pair_{round_}"] = float(min(pixel_difference(shown[a], shown[b])
                                          for a in range(4) for b in range(a + 1, 4)))
        row[f"middle_{round_}"] = float(pixel_difference(shown, middle).mean())
        searcher.choose(judge.answer(proposal.points))   # a pick, or "same"
        for key, point in (("reached", searcher.picked), ("estimate_reached", searcher.current)):
            if row[key] is None and arrived(point):
                row[key] = round_
    return row


def visible_study(out: Path, targets: int, jobs: int, floors: list[float]) -> None:
    """The search a person sees (``--visible``; see the module docstring)."""
    import torch

    from pirtune.models.bundle import load_bundle
    from pirtune.paths import SHIPPED_GENERATOR
    from pirtune.search import principal_directions

    torch.set_num_threads(1)
    generator, _, _ = load_bundle(SHIPPED_GENERATOR)
    generator.eval()
    basis = principal_directions(generator, VISIBLE_K)   # as the web app's PCA
    variants = visible_variants(floors)
    cells = [(search, variant, person) for search in variants for variant in variants[search]
             for person in VISIBLE_PEOPLE]
    rows = Parallel(n_jobs=jobs)(
        delayed(visible_one)(generator, basis, search, variant, variants[search][variant],
                             person, seed)
        for search, variant, person in cells for seed in range(targets))
    with open(out / "search_visible.csv", "w", newline="") as f:
        fields = ["search", "variant", "person", "seed", "reached", "estimate_reached",
                  *(f"{kind}_{r}" for kind in ("pair", "middle")
                    for r in range(1, VISIBLE_ROUNDS + 1))]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    shown = (1, 4, 8, 12, 16, 20, 30, 40)
    lines = [f"Shipped generator, {VISIBLE_K} GANSpace directions, {targets} people per cell, "
             f"{VISIBLE_ROUNDS} rounds. Least difference between two candidates, median over "
             "people (8-bit pixels, /255), per round; then the candidates' mean difference "
             "from the middle image; reached: the last pick within R of the target or "
             "looking the same as it (within 4/255), within 40 rounds (median rounds); "
             "the same for the search's estimate (the posterior median; for the axis "
             "search the pick).", "",
             "| search | steps | person | least pair difference, rounds "
             + ", ".join(map(str, shown)) + " | from the middle, same rounds | reached "
             "(median rounds) | estimate reached |", "|---|---|---|---|---|---:|---:|"]
    for search, variant, person in cells:
        cell = [row for row in rows if (row["search"], row["variant"], row["person"])
                == (search, variant, person)]

        def median(key: str, cell=cell) -> str:
            values = [row[key] for row in cell if key in row]
            return f"{np.median(values):.1f}" if values else "—"
        def reached(key: str, cell=cell) -> str:
            rounds = [row[key] for row in cell if row[key] is not None]
            median = f"{np.median(rounds):.0f}" if rounds else "—"
            return f"{len(rounds) / len(cell):.0%} ({median})"
        lines.append(f"| {search} | {variant} | {person} | "
                     + " / ".join(median(f"pair_{r}") for r in shown) + " | "
                     + " / ".join(median(f"middle_{r}") for r in shown) + " | "
                     f"{reached('reached')} | {reached('estimate_reached')} |")
    (out / "search_visible.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--people", nargs="+", choices=list(PEOPLE), default=list(PEOPLE))
    parser.add_argument("--searches", nargs="+", choices=list(SEARCHES), default=list(SEARCHES))
    parser.add_argument("--cost", action="store_true",
                        help="only time AxisSearch's rounds at n = 512 (search_cost.json)")
    parser.add_argument("--visible", action="store_true",
                        help="only the search a person sees: the shipped generator's images, "
                             "with and without visible steps (search_visible.*)")
    parser.add_argument("--floors", type=float, nargs="+", default=[4.0, 6.0],
                        help="with --visible: the floors (between the nearest two "
                             "candidates, /255) to compare")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.cost:
        cost(args.out)
        return
    if args.visible:
        visible_study(args.out, args.targets, args.jobs, args.floors)
        return

    summary = []
    for n in args.dims:
        radius = satisfaction_radius(n)
        bound = rounds_lower_bound(n, math.sqrt(2 * n), radius)
        for person in args.people:
            for search in args.searches:
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
                    **done_honesty(rows),
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
             "2.5× bound | stalled | distance after 10 / 20 / 50 | bound | done: within R "
             "(median distance/R, rounds) | not progressing (median distance/R, rounds) |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        distances = " / ".join(f"{s[f'median_distance_{r}']:.2f}" for r in CHECKPOINTS)
        lines.append(f"| {s['n']} | {s['person']} | {s['search']} | {s['median_rounds']:.0f} "
                     f"[{s['q1']:.0f}, {s['q3']:.0f}] | {s['median_rounds'] / s['bound']:.2f} | "
                     f"{s['reached']:.0%} | {s['within_2.5x_bound']:.0%} | {s['stalled']:.0%} | "
                     f"{distances} | {s['bound']:.0f} | {s['done_within_R']:.0%} "
                     f"({s['done_median_distance']:.2f}, {s['done_median_rounds']:.0f}) | "
                     f"{s['slowed']:.0%} ({s['slowed_median_distance']:.2f}, "
                     f"{s['slowed_median_rounds']:.0f}) |")
    (args.out / "search.md").write_text("\n".join(lines) + "\n")

    fig = Figure(figsize=(4 * len(args.dims), 3.5))
    for i, n in enumerate(args.dims):
        ax = fig.add_subplot(1, len(args.dims), i + 1)
        rows = [s for s in summary if s["n"] == n]
        for j, search in enumerate(args.searches):
            values = [s["median_rounds"] for s in rows if s["search"] == search]
            ax.bar(np.arange(len(args.people)) + 0.27 * (j - 1), values, width=0.27,
                   label=search)
        ax.axhline(rows[0]["bound"], color="k", linestyle="--", linewidth=1, label="bound")
        ax.set_xticks(range(len(args.people)), args.people, fontsize=7, rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_title(f"n = {n}, R = {rows[0]['radius']:.2f}")
        ax.set_ylabel("median rounds to R")
    fig.axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "search.png", dpi=120)
    print(f"wrote {args.out / 'search.csv'}, search.md and search.png")


if __name__ == "__main__":
    main()
