"""A head start for the next person: rounds to the target with and without ``--prior``.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench/headstart.py   # docs/bench/headstart.{csv,md}
    python scripts/bench/headstart.py --smoke                   # minutes, into a temp folder

1. **A crowd** with the hidden objective ``--objective`` (Bradley–Terry picks
   at ``--temperature``, as ``scripts/bench/crowd.py``) makes ``--people`` ×
   ``--rounds`` picks through ``pirtune-serve`` over HTTP (``pirtune.webapp.crowd``).
2. **A choice model** is fitted on its log: ``pirtune-train stage=estimate
   data=interactions data.path=<log> objective=<objective>
   data.hidden_objective=true`` (its ``estimator.pt`` records the generator).
3. **Newcomers**, ``--newcomers`` per group, each with a target latent z* of
   their session's class: *sharing* newcomers want what the crowd wants, their
   target drawn from the generator's draws tilted by the same objective,
   p(z*) ∝ p(z)·exp(PIR(G(z)) / β) with β = ``--beta`` (by default the crowd's
   temperature: the image a crowd member would pick among endless draws);
   *unrelated* newcomers' targets are plain draws of the generator. Each plays
   one session over HTTP against a fresh ``pirtune-serve``, once without and
   once with ``--prior <the crowd's estimator.pt>`` (the same target, class and
   seed), for ``preference`` and ``axis``. A newcomer sees each round's
   candidates as the log holds them (their latents) and picks the one nearest
   their target in the session's coordinates (exact picks), until the middle
   image lies within the satisfaction radius R = 0.05·√k of the target's
   projection, the search stalls (the page's "as far as it can"), or
   ``--max-rounds``.

Every step writes its result into ``--work`` and is skipped when it is there,
and the newcomers' rows are appended one by one to ``<work>/newcomers.csv``,
so a killed run continues where it stopped (``timeout -s INT`` lets it stop its
servers). ``--out`` gets the CSV (one row per newcomer session) and the table,
whose ratios carry 95 % intervals from resampling the newcomers (each with
and without the prior together). The "most a prior can save" column is
the information bound: the tilt's KL divergence from the generator's own
draws (estimated on the target pool, in bits) over 2 bits per answer; no
prior can save more rounds on average (the KL of the slice's coordinates is
at most the latent's).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # also in the servers, which inherit it

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pirtune.models.bundle import draw_latents, load_sampler, render  # noqa: E402
from pirtune.paths import SHIPPED_GENERATOR  # noqa: E402
from pirtune.search import SimulatedPerson, satisfaction_radius  # noqa: E402
from pirtune.webapp import InteractionLog  # noqa: E402
from pirtune.webapp.crowd import Noise, compose_objective, run_crowd  # noqa: E402
from pirtune.webapp.serve import launch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
K = 8                      # GANSpace directions: the page's default
ALGORITHMS = ("preference", "axis")
GROUPS = ("sharing", "unrelated")
CONDITIONS = ("without", "with")
UNLIMITED = ["--sessions-per-client", "1000000", "--sessions-total", "1000000"]
FIELDS = ["group", "algorithm", "prior", "newcomer", "image_class", "seed", "rounds_to_r",
          "rounds_to_2r", "rounds", "stalled", "start_distance", "final_distance", "radius",
          "seconds"]
SMOKE = {"people": 3, "rounds": 4, "newcomers": 2, "max_rounds": 6, "pool": 256,
         "estimate": ["estimator.epochs=1", "estimator.batch_size=8",
                      "estimator.val_fraction=0.34"]}


def make_crowd(args, work: Path) -> dict:
    """The crowd's log ``<work>/crowd.db`` and what it did (``crowd.json``), made once."""
    done = work / "crowd.json"
    if done.is_file():
        return json.loads(done.read_text())
    db = work / "crowd.db"
    db.unlink(missing_ok=True)   # a crowd killed half-way starts again
    server, base = launch(db, options=["--checkpoint", str(args.checkpoint), *UNLIMITED])
    try:
        start = time.perf_counter()
        result = run_crowd(base, compose_objective(args.objective), args.people, args.rounds,
                           Noise(args.temperature), undo_share=0.05, seed=args.seed)
    finally:
        server.kill()
        server.wait()
    crowd = {"people": args.people, "picks": result.picks, "undone": result.undone,
             "seconds": time.perf_counter() - start}
    done.write_text(json.dumps(crowd, indent=2) + "\n")
    return crowd


def fit_prior(args, work: Path) -> tuple[Path, dict]:
    """The crowd's choice model (``pirtune-train stage=estimate``, resumable) and its report."""
    run = work / "runs" / "crowd-choice"
    if not (run / "estimator.pt").is_file():
        subprocess.run([sys.executable, "-m", "pirtune.train", "stage=estimate",
                        "data=interactions", f"data.path={work / 'crowd.db'}",
                        f"generator_ckpt={args.checkpoint}", f"objective={args.objective}",
                        "data.hidden_objective=true", "name=crowd-choice", f"seed={args.seed}",
                        "progress=false", "logger=csv", *args.estimate],
                       check=True, env={**os.environ, "PIRTUNE_HOME": str(work)})
    return run / "estimator.pt", json.loads((run / "estimator_report.json").read_text())


def target_pool(args, work: Path) -> dict:
    """Per class, ``--pool`` draws of the generator and their objective's PIR (cached)."""
    cache = work / "targets.npz"
    if not cache.is_file():
        generator, _ = load_sampler(args.checkpoint)
        objective = compose_objective(args.objective)
        rng = torch.Generator().manual_seed(10_000 + args.seed)
        arrays = {}
        for cls in range(generator.num_classes):
            labels = torch.full((args.pool,), cls)
            latents = draw_latents(generator, labels, rng)
            with torch.no_grad():
                pir = torch.cat([objective(render(generator, latents[i:i + 1024],
                                                  labels[i:i + 1024]))
                                 for i in range(0, args.pool, 1024)])
            arrays[f"latents{cls}"] = latents.double().numpy()
            arrays[f"pir{cls}"] = pir.double().numpy()
        np.savez(cache, **arrays)
    data = np.load(cache)
    classes = len([key for key in data.files if key.startswith("latents")])
    return {cls: (data[f"latents{cls}"], data[f"pir{cls}"]) for cls in range(classes)}


def tilt_weights(pir: np.ndarray, beta: float) -> np.ndarray:
    """Weights ∝ exp(PIR / β) over a pool [N], summing to 1."""
    logits = (pir - pir.max()) / beta
    weights = np.exp(logits)
    return weights / weights.sum()


def kl_bits(weights: np.ndarray) -> float:
    """KL(tilted ‖ the pool's own draws) in bits: Σ w·log₂(N·w)."""
    kept = weights[weights > 0]
    return float(np.sum(kept * np.log2(len(weights) * kept)))


def newcomers(pools: dict, args) -> list[dict]:
    """Every newcomer's class, seed and target latent, for both groups (the same for both
    conditions and algorithms)."""
    people = []
    for group in GROUPS:
        for i in range(args.newcomers):
            cls = i % len(pools)
            latents, pir = pools[cls]
            rng = np.random.default_rng([args.seed, GROUPS.index(group), i])
            weights = (tilt_weights(pir, args.beta) if group == "sharing"
                       else np.full(len(pir), 1 / len(pir)))
            people.append({"group": group, "newcomer": i, "image_class": cls,
                           "seed": 1000 + i, "target": latents[rng.choice(len(pir), p=weights)]})
    return people


def play(client: httpx.Client, log: InteractionLog, person: dict, algorithm: str,
         max_rounds: int) -> dict:
    """One newcomer's session over HTTP: exact picks towards the target until within R."""
    start = time.perf_counter()
    state = client.post("/api/sessions", json={"algorithm": algorithm, "k": K,
                                               "image_class": person["image_class"],
                                               "seed": person["seed"]})
    state.raise_for_status()
    state = state.json()
    session = state["session_id"]
    settings = log.session(session)["settings"]
    origin, basis = np.array(settings["origin"]), np.array(settings["basis"])
    target = basis @ (person["target"] - origin)            # the reachable part of z*
    chooser = SimulatedPerson(target)
    radius = satisfaction_radius(K)

    def distance(round_: int) -> float:   # the middle image of the round on show
        return float(np.linalg.norm(basis @ (np.array(log.rounds(session)[round_].current)
                                             - origin) - target))

    distances = [distance(1)]
    while state["round"] <= max_rounds and not state["stalled"] and distances[-1] > radius:
        shown = np.array(log.rounds(session)[state["round"]].latents)
        pick = chooser.pick((shown - origin) @ basis.T)
        state = client.post(f"/api/sessions/{session}/choices",
                            json={"round": state["round"], "index": pick})
        state.raise_for_status()
        state = state.json()
        distances.append(distance(state["round"]))
    client.post(f"/api/sessions/{session}/finish").raise_for_status()

    def first(limit: float) -> int | str:
        return next((r for r, d in enumerate(distances) if d <= limit), "")

    return {"rounds_to_r": first(radius), "rounds_to_2r": first(2 * radius),
            "rounds": len(distances) - 1, "stalled": bool(state["stalled"]),
            "start_distance": round(distances[0], 4), "final_distance": round(distances[-1], 4),
            "radius": round(radius, 4), "seconds": round(time.perf_counter() - start, 2)}


def run_newcomers(args, work: Path, prior: Path, people: list[dict]) -> list[dict]:
    """Every newcomer session, without then with the prior; rows already in the CSV are kept."""
    table = work / "newcomers.csv"
    rows = list(csv.DictReader(table.open())) if table.is_file() else []
    done = {(r["group"], r["algorithm"], r["prior"], r["newcomer"]) for r in rows}
    for condition in CONDITIONS:
        todo = [(p, a) for a in ALGORITHMS for p in people
                if (p["group"], a, condition, str(p["newcomer"])) not in done]
        if not todo:
            continue
        db = work / f"newcomers-{condition}.db"
        options = ["--checkpoint", str(args.checkpoint), *UNLIMITED,
                   *(["--prior", str(prior)] if condition == "with" else [])]
        server, base = launch(db, options=options)
        try:
            log = InteractionLog(db)
            with httpx.Client(base_url=base, timeout=120) as client:
                for person, algorithm in todo:
                    row = {"group": person["group"], "algorithm": algorithm,
                           "prior": condition, "newcomer": person["newcomer"],
                           "image_class": person["image_class"], "seed": person["seed"],
                           **play(client, log, person, algorithm, args.max_rounds)}
                    new = not table.is_file()
                    with table.open("a", newline="") as f:
                        writer = csv.DictWriter(f, fieldnames=FIELDS)
                        if new:
                            writer.writeheader()
                        writer.writerow(row)
                    rows.append({key: str(value) for key, value in row.items()})
                    print(f"headstart: {condition} prior, {algorithm}, {person['group']} "
                          f"#{person['newcomer']}: R after {row['rounds_to_r']!r} rounds, 2R "
                          f"after {row['rounds_to_2r']!r} ('': never)", flush=True)
        finally:
            server.kill()
            server.wait()
    return rows


def summary(rows: list[dict], cap: int, draws: int = 2000) -> list[dict]:
    """Per group and algorithm, with and without the prior: rounds to R and to 2R.

    A session that never came within R (it stalled, or reached the cap) counts
    as ``cap`` rounds, so a median stays honest while fewer than half are
    censored. The ratios' 95 % intervals resample the newcomers (each with and
    without the prior together) ``draws`` times.
    """
    out = []
    rng = np.random.default_rng(0)
    for group in GROUPS:
        for algorithm in ALGORITHMS:
            cell, paired = {"group": group, "algorithm": algorithm}, {}
            for condition in CONDITIONS:
                mine = sorted((r for r in rows if (r["group"], r["algorithm"], r["prior"])
                               == (group, algorithm, condition)),
                              key=lambda r: int(r["newcomer"]))
                to_r = np.array([int(r["rounds_to_r"]) if r["rounds_to_r"] else cap
                                 for r in mine])
                to_2r = np.array([int(r["rounds_to_2r"]) if r["rounds_to_2r"] else cap
                                  for r in mine])
                paired[condition] = (to_r, to_2r)
                cell |= {f"{condition}_n": len(mine),
                         f"{condition}_median_r": float(np.median(to_r)),
                         f"{condition}_reached_r": float(np.mean([bool(r["rounds_to_r"])
                                                                  for r in mine])),
                         f"{condition}_median_2r": float(np.median(to_2r)),
                         f"{condition}_mean_2r": float(np.mean(to_2r)),
                         f"{condition}_start": float(np.mean([float(r["start_distance"])
                                                              for r in mine]))}
            cell["ratio_r"] = cell["with_median_r"] / cell["without_median_r"]
            cell["ratio_2r"] = cell["with_mean_2r"] / cell["without_mean_2r"]
            (r0, m0), (r1, m1) = paired["without"], paired["with"]
            picks = rng.integers(len(r0), size=(draws, len(r0)))
            for name, ratios in (
                    ("ratio_r", np.median(r1[picks], 1) / np.median(r0[picks], 1)),
                    ("ratio_2r", m1[picks].mean(1) / m0[picks].mean(1))):
                cell[f"{name}_low"], cell[f"{name}_high"] = np.percentile(ratios, [2.5, 97.5])
            out.append(cell)
    return out


def markdown(cells: list[dict], args, crowd: dict, report: dict, bounds: dict,
             machine: str) -> str:
    target = {"sharing": 0.60, "unrelated": 1.10}
    lines = [
        f"Newcomers through `pirtune-serve` over HTTP, without and with `--prior` (the choice "
        f"model of a crowd: {crowd['people']} people with hidden objective `{args.objective}`, "
        f"Bradley–Terry picks at temperature {args.temperature} PIR, {crowd['picks']} picks; "
        f"held-out pick accuracy {report['pick_accuracy']:.3f}, chance 0.25). "
        f"{args.newcomers} newcomers per group and search, the same targets, classes and seeds "
        f"with and without the prior; exact picks in the page's {K} GANSpace directions; "
        f"R = 0.05·√{K} = {satisfaction_radius(K):.3f}; at most {args.max_rounds} rounds. "
        f"*Sharing* targets: the generator's draws tilted by `{args.objective}` at β = "
        f"{args.beta} (a pool of {args.pool} draws per class); *unrelated*: plain draws. "
        f"{machine}. Made by `{' '.join(['python scripts/bench/headstart.py', *sys.argv[1:]])}`.",
        "",
        "| newcomers | search | median rounds to R: without → with | ratio [95 % CI] "
        "(target) | reached R without / with | mean rounds to 2R: without → with | ratio "
        "[95 % CI] | start distance without → with | most a prior can save |",
        "|---|---|---|---|---|---|---|---|---:|"]
    for c in cells:
        bound = (f"{bounds[c['group']]:.1f} rounds" if c["group"] == "sharing" else "0 (no tilt)")
        lines.append(
            f"| {c['group']} | {c['algorithm']} | {c['without_median_r']:.1f} → "
            f"{c['with_median_r']:.1f} | {c['ratio_r']:.2f} [{c['ratio_r_low']:.2f}, "
            f"{c['ratio_r_high']:.2f}] (≤ {target[c['group']]:.2f}) | "
            f"{c['without_reached_r']:.0%} / {c['with_reached_r']:.0%} | "
            f"{c['without_mean_2r']:.1f} → {c['with_mean_2r']:.1f} | {c['ratio_2r']:.2f} "
            f"[{c['ratio_2r_low']:.2f}, {c['ratio_2r_high']:.2f}] | "
            f"{c['without_start']:.2f} → {c['with_start']:.2f} | {bound} |")
    lines += ["", "A session that never came within R (or 2R) before it stalled or reached the "
              f"cap counts as {args.max_rounds} rounds. The intervals resample the newcomers, "
              "each with and without the prior together."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--objective", default="color_blue", help="the crowd's hidden objective")
    parser.add_argument("--people", type=int, default=40, help="people in the crowd")
    parser.add_argument("--rounds", type=int, default=25, help="picks each of them makes")
    parser.add_argument("--temperature", type=float, default=0.01,
                        help="the crowd's Bradley–Terry temperature, PIR units")
    parser.add_argument("--beta", type=float, default=None,
                        help="the sharing newcomers' tilt, PIR units (default: --temperature)")
    parser.add_argument("--newcomers", type=int, default=60, help="newcomers per group")
    parser.add_argument("--max-rounds", type=int, default=60, help="rounds a newcomer plays "
                                                                   "at most")
    parser.add_argument("--pool", type=int, default=16384,
                        help="draws per class the targets are resampled from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_GENERATOR)
    parser.add_argument("--work", type=Path, default=None,
                        help="where the crowd, the model and the sessions go (default: "
                             "runs/bench-headstart, or a temp folder with --smoke)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "headstart",
                        help="the CSV and table's path without suffix")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny crowd, one epoch, two newcomers, into a temp folder")
    args, estimate = parser.parse_known_args()
    args.estimate = estimate
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, [*value, *estimate] if key == "estimate" else value)
        args.work = args.work or Path(tempfile.mkdtemp(prefix="headstart-smoke-"))
        if args.out == parser.get_default("out"):
            args.out = args.work / "headstart"
    args.beta = args.beta or args.temperature
    args.work = (args.work or REPO / "runs" / "bench-headstart").resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    load = [os.getloadavg()[0]]
    crowd = make_crowd(args, args.work)
    prior, report = fit_prior(args, args.work)
    pools = target_pool(args, args.work)
    bounds = {"sharing": float(np.mean([kl_bits(tilt_weights(pir, args.beta))
                                        for _, pir in pools.values()])) / 2}
    rows = run_newcomers(args, args.work, prior, newcomers(pools, args))
    load.append(os.getloadavg()[0])
    cells = summary(rows, args.max_rounds)
    machine = (f"{os.cpu_count()} CPU cores ({len(os.sched_getaffinity(0))} usable), load "
               f"average {load[0]:.1f} before and {load[1]:.1f} after")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    text = markdown(cells, args, crowd, report, bounds, machine)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    print(f"written: {args.out}.{{csv,md}}; the crowd, model and sessions stay in {args.work}")


if __name__ == "__main__":
    main()
