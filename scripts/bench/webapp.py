"""Web app latency: time per four-choice round, alone in process and with 10 people on a server.

Two measurements with the shipped generator on CPU (issue 6):

1. One person at a time, in process: FastAPI's ``TestClient`` over
   ``create_app`` with one torch thread, ``--sessions`` sessions of
   ``--rounds`` rounds each. A round is the pick (POST; the search proposes the
   next four) and the five PNGs it puts on show (the current image and the four
   candidates). The picks are a ``SimulatedPerson``'s, steering towards a
   seeded random target. Reports p50/p95/max per round against the target p95
   under 200 ms; the session start (POST plus the first five PNGs) is timed
   apart.
2. ``--people`` people at once against ``pirtune-serve`` (a subprocess on a
   free port, fresh database, one torch thread per request): each is a thread
   with its own ``httpx.Client`` playing one session of ``--people-rounds``
   rounds with seeded random picks, once for each ``--think`` (the seconds a
   person looks before each pick: 0, everyone picks the moment the images
   arrive, a closed loop that measures the server's capacity; 2, about what a
   person spends on four images). Reports requests, wall time, requests per
   second and the per-round latency the people saw, against p95 under 200 ms.

3. Memory per live session, in process: the resident memory added by
   ``--memory-sessions`` new sessions (each started and answered once) with
   the cache holding them all, for the page's GANSpace k = 8 and for the full
   latent space; then the same number of sessions again with the cache capped
   at ``--cap`` (``Limits.live_sessions``), whose growth should stop at the cap.
4. The limits on new sessions: one client starting sessions as fast as it
   can, then many clients, against the default ``Limits``: how many are taken
   and how many refused with 429 within one window.

Writes ``<out>/webapp.json`` (every figure and the machine) and
``<out>/webapp.md`` (the table, also printed). Run it alone: on a 2-core
machine a second busy process distorts the figures.

    python scripts/bench/webapp.py --out docs/bench
    python scripts/bench/webapp.py --quick --out /tmp/webapp-bench   # a smoke run
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning, here and in the server (as `make bench`).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from pirtune.models.bundle import load_sampler  # noqa: E402
from pirtune.paths import SHIPPED_GENERATOR  # noqa: E402
from pirtune.search import SimulatedPerson  # noqa: E402
from pirtune.search.space import SearchSpace  # noqa: E402
from pirtune.webapp import InteractionLog  # noqa: E402
from pirtune.webapp.app import Limits, create_app  # noqa: E402
from pirtune.webapp.serve import class_names, launch  # noqa: E402

K = 8                     # GANSpace directions, the page's default
ALGORITHM = "preference"
TARGET_P95_MS = 200.0
QUICK = {"sessions": 2, "rounds": 3, "people": 3, "people_rounds": 3, "think": [0.0, 0.1],
         "memory_sessions": 8, "cap": 4}
UNLIMITED = {"sessions_per_client": 10**9, "sessions_total": 10**9}


def _ms(seconds: list[float]) -> dict[str, float]:
    """p50, p95 and max of durations in seconds, as milliseconds."""
    values = 1000 * np.asarray(seconds)
    return {"p50": round(float(np.percentile(values, 50)), 1),
            "p95": round(float(np.percentile(values, 95)), 1),
            "max": round(float(values.max()), 1)}


def _images(client: httpx.Client | TestClient, state: dict) -> int:
    """Fetch the round's five PNGs; return the number of requests."""
    for url in (state["current"], *state["candidates"]):
        client.get(url).raise_for_status()
    return 5


def in_process(checkpoint: Path, sessions: int, rounds: int) -> dict:
    """Per-round latency of one person at a time through ``TestClient`` (one torch thread)."""
    generator, meta = load_sampler(checkpoint)
    generator.eval()
    starts, times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        log = InteractionLog(Path(tmp) / "log.db")
        app = create_app(generator, log, class_names(meta, generator.num_classes))
        torch.set_num_threads(1)   # after the start-up PCA, as pirtune-serve does
        with TestClient(app) as client:
            for i in range(sessions):
                started = time.perf_counter()
                state = client.post("/api/sessions", json={
                    "k": K, "seed": i, "image_class": i % generator.num_classes,
                    "algorithm": ALGORITHM}).raise_for_status().json()
                _images(client, state)
                starts.append(time.perf_counter() - started)
                session_id = state["session_id"]
                settings = log.session(session_id)["settings"]
                space = SearchSpace(np.array(settings["origin"]), np.array(settings["basis"]))
                person = SimulatedPerson(np.random.default_rng(i).standard_normal(K))
                for round_ in range(1, rounds + 1):
                    shown = [s for s in log.shown()
                             if s.session_id == session_id and s.round == round_]
                    pick = person.pick(space.to_coords(np.array([s.latent for s in shown])))
                    started = time.perf_counter()
                    state = client.post(f"/api/sessions/{session_id}/choices", json={
                        "round": round_, "index": pick}).raise_for_status().json()
                    _images(client, state)
                    times.append(time.perf_counter() - started)
        log.close()
    round_ms = _ms(times)
    return {"sessions": sessions, "rounds": rounds, "torch_threads": 1,
            "round_ms": round_ms, "start_ms": _ms(starts),
            "target_p95_ms": TARGET_P95_MS, "meets_target": round_ms["p95"] < TARGET_P95_MS}


def concurrent(checkpoint: Path, people: int, rounds: int, think: float = 0.0) -> dict:
    """Requests per second and per-round latency of ``people`` sessions at once on a server.

    ``think``: seconds each person looks at the four candidates before picking (uniform
    in 0.5–1.5× it; 0: every person picks the moment the images arrive, a load no crowd
    of that size makes).
    """
    barrier = threading.Barrier(people + 1)   # everyone starts at once

    def person(base: str, i: int, num_classes: int) -> tuple[int, float, list[float]]:
        rng = np.random.default_rng(i)
        with httpx.Client(base_url=base, timeout=120) as client:
            barrier.wait()
            started = time.perf_counter()
            state = client.post("/api/sessions", json={
                "k": K, "seed": i, "image_class": i % num_classes, "algorithm": ALGORITHM,
            }).raise_for_status().json()
            requests = 1 + _images(client, state)
            start = time.perf_counter() - started
            times = []
            for round_ in range(1, rounds + 1):
                if think > 0:
                    time.sleep(think * rng.uniform(0.5, 1.5))
                started = time.perf_counter()
                state = client.post(f"/api/sessions/{state['session_id']}/choices", json={
                    "round": round_, "index": int(rng.integers(4))}).raise_for_status().json()
                requests += 1 + _images(client, state)
                times.append(time.perf_counter() - started)
        return requests, start, times

    with tempfile.TemporaryDirectory() as tmp:
        # The people share one address here; the per-client limit is for real clients.
        server, base = launch(Path(tmp) / "log.db",
                              options=["--checkpoint", str(checkpoint), "--threads", "1",
                                       "--sessions-per-client", str(10 * people)])
        try:
            num_classes = len(httpx.get(f"{base}/api/info").json()["classes"])
            with ThreadPoolExecutor(people) as pool:
                futures = [pool.submit(person, base, i, num_classes) for i in range(people)]
                barrier.wait()
                started = time.perf_counter()
                results = [f.result() for f in futures]
                wall = time.perf_counter() - started
        finally:
            server.kill()
            server.wait()
    requests = sum(r for r, _, _ in results)
    return {"people": people, "rounds": rounds, "think_s": think, "server_torch_threads": 1,
            "requests": requests, "wall_s": round(wall, 2),
            "requests_per_s": round(requests / wall, 1),
            "round_ms": _ms([t for _, _, times in results for t in times]),
            "start_ms": _ms([s for _, s, _ in results])}


def _rss_mib() -> float:
    """This process's resident memory in MiB (Linux)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _start_and_answer(client: TestClient, space: dict, seed: int) -> None:
    """A new session in ``space``, answered once (its search is then live)."""
    state = client.post("/api/sessions", json={
        **space, "seed": seed, "algorithm": ALGORITHM}).raise_for_status().json()
    client.post(f"/api/sessions/{state['session_id']}/choices",
                json={"round": 1, "index": seed % 4}).raise_for_status()


def memory(checkpoint: Path, sessions: int, cap: int) -> dict:
    """MiB per live session (k = 8 and the full space), and the growth with the cache capped."""
    generator, meta = load_sampler(checkpoint)
    generator.eval()
    torch.set_num_threads(1)
    result = {"sessions": sessions, "cap": cap}
    with tempfile.TemporaryDirectory() as tmp:
        for name, space, live in (("ganspace_k8", {"k": K}, sessions),
                                  ("full", {"space": "full"}, sessions),
                                  ("full_capped", {"space": "full"}, cap)):
            log = InteractionLog(Path(tmp) / f"{name}.db")
            app = create_app(generator, log, class_names(meta, generator.num_classes),
                             Limits(live_sessions=live, **UNLIMITED))
            with TestClient(app) as client:
                for seed in range(4):   # warm-up: PNG encoders, SQLite pages
                    _start_and_answer(client, space, seed)
                gc.collect()
                before = _rss_mib()
                for seed in range(4, 4 + sessions):
                    _start_and_answer(client, space, seed)
                gc.collect()
                grown = _rss_mib() - before
                result[name] = {"live": len(app.state.live), "grown_mib": round(grown, 1),
                                "mib_per_session": round(grown / sessions, 2)}
            log.close()
            del app
            gc.collect()
    return result


def limits() -> dict:
    """The default limits on new sessions, hit by one fast client and then by many."""
    generator, meta = load_sampler(SHIPPED_GENERATOR)
    generator.eval()
    defaults = Limits()
    result = {"window_s": defaults.window_s, "per_client": defaults.sessions_per_client,
              "total": defaults.sessions_total}
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(generator, InteractionLog(Path(tmp) / "log.db"),
                         class_names(meta, generator.num_classes))
        one = TestClient(app, client=("10.0.0.1", 5000))
        started = time.perf_counter()
        codes = [one.post("/api/sessions", json={"k": K}).status_code
                 for _ in range(defaults.sessions_per_client + 10)]
        refused = one.post("/api/sessions", json={"k": K})
        result["one_client"] = {"tried": len(codes), "taken": codes.count(200),
                                "refused_429": codes.count(429),
                                "per_s": round(len(codes) / (time.perf_counter() - started), 1),
                                "message": refused.json()["detail"],
                                "retry_after_s": int(refused.headers["Retry-After"])}
        codes = [TestClient(app, client=(f"10.0.1.{i}", 5000)).post(
                     "/api/sessions", json={"k": K}).status_code
                 for i in range(defaults.sessions_total)]
        result["many_clients"] = {"tried": len(codes), "taken": codes.count(200),
                                  "refused_429": codes.count(429)}
    return result


def table(result: dict) -> str:
    """The Markdown table of both measurements."""
    one, many = result["in_process"], result["concurrent"]
    machine = result["machine"]
    verdict = "yes" if one["meets_target"] else "no"
    lines = [
        f"Shipped generator on CPU ({machine['processor'] or machine['machine']}, "
        f"{machine['cpu_count']} cores, torch {machine['torch']}); k = {K}, {ALGORITHM} search. "
        "A round is a pick and its five PNGs.",
        "",
        "| setting | rounds | round p50 (ms) | round p95 (ms) | round max (ms) | "
        "session start p50 (ms) | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| one person, in process, 1 thread | {one['sessions']} × {one['rounds']} | "
        f"{one['round_ms']['p50']:.0f} | {one['round_ms']['p95']:.0f} | "
        f"{one['round_ms']['max']:.0f} | {one['start_ms']['p50']:.0f} | "
        f"p95 < {TARGET_P95_MS:.0f} ms: {verdict} |",
        *[f"| {m['people']} people at once, pirtune-serve, "
          + (f"{m['think_s']:g} s to look before each pick" if m.get("think_s")
             else "each picking the moment the images arrive")
          + f" | {m['people']} × {m['rounds']} | {m['round_ms']['p50']:.0f} | "
          f"{m['round_ms']['p95']:.0f} | {m['round_ms']['max']:.0f} | "
          f"{m['start_ms']['p50']:.0f} | {m['requests']} requests in "
          f"{m['wall_s']:.1f} s, {m['requests_per_s']:.0f} req/s; p95 < "
          f"{TARGET_P95_MS:.0f} ms: {'yes' if m['round_ms']['p95'] < TARGET_P95_MS else 'no'} |"
          for m in (many if isinstance(many, list) else [many])],
    ]
    mem = result["memory"]
    lines += [
        "",
        f"Memory: {mem['sessions']} new sessions (started and answered once) in process.",
        "",
        "| search space | cache | live sessions | resident memory added | per session |",
        "|---|---:|---:|---:|---:|",
        *[f"| {space} | {cache} | {mem[name]['live']} | {mem[name]['grown_mib']:.0f} MiB | "
          f"{mem[name]['mib_per_session']:.2f} MiB |"
          for name, space, cache in (("ganspace_k8", f"GANSpace k = {K}", "all"),
                                     ("full", "full (64)", "all"),
                                     ("full_capped", "full (64)", f"capped at {mem['cap']}"))],
    ]
    lim = result["limits"]
    lines += [
        "",
        f"New sessions (default limits: {lim['per_client']} per client and {lim['total']} in "
        f"total per {lim['window_s']:g} s): one client trying {lim['one_client']['tried']} at "
        f"{lim['one_client']['per_s']:.0f}/s got {lim['one_client']['taken']}, then 429 "
        f"(Retry-After {lim['one_client']['retry_after_s']} s: "
        f"\"{lim['one_client']['message']}\"); {lim['many_clients']['tried']} more from "
        f"other clients: {lim['many_clients']['taken']} taken, "
        f"{lim['many_clients']['refused_429']} refused.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path,
                        default=SHIPPED_GENERATOR)
    parser.add_argument("--sessions", type=int, default=10, help="in-process sessions")
    parser.add_argument("--rounds", type=int, default=30, help="rounds per in-process session")
    parser.add_argument("--people", type=int, default=10, help="concurrent people on the server")
    parser.add_argument("--think", type=float, nargs="+", default=[0.0, 2.0],
                        help="seconds each concurrent person looks before a pick (one "
                             "measurement per value; 0: no pause)")
    parser.add_argument("--people-rounds", type=int, default=20,
                        help="rounds per concurrent person")
    parser.add_argument("--memory-sessions", type=int, default=64,
                        help="new sessions per memory measurement")
    parser.add_argument("--cap", type=int, default=16,
                        help="the capped cache's size in the memory measurement")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    args = parser.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    args.out.mkdir(parents=True, exist_ok=True)

    result = {
        "machine": {"processor": platform.processor(), "machine": platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__,
                    "omp_wait_policy": os.environ["OMP_WAIT_POLICY"]},
        "checkpoint": str(args.checkpoint), "k": K, "algorithm": ALGORITHM,
        "quick": args.quick,
    }
    result["in_process"] = in_process(args.checkpoint, args.sessions, args.rounds)
    print(f"in process: {json.dumps(result['in_process'])}", flush=True)
    result["concurrent"] = [concurrent(args.checkpoint, args.people, args.people_rounds, think)
                            for think in args.think]
    print(f"concurrent: {json.dumps(result['concurrent'])}", flush=True)
    result["memory"] = memory(args.checkpoint, args.memory_sessions, args.cap)
    print(f"memory: {json.dumps(result['memory'])}", flush=True)
    result["limits"] = limits()
    print(f"limits: {json.dumps(result['limits'])}", flush=True)

    (args.out / "webapp.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = table(result)
    (args.out / "webapp.md").write_text(markdown)
    print(markdown, end="")
    print(f"wrote {args.out / 'webapp.json'} and webapp.md")


if __name__ == "__main__":
    main()
