"""The head-start benchmark (scripts/bench/headstart.py), smoke-sized, on the tiny generator."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from pirtune.files import file_sha256
from pirtune.webapp import InteractionLog

REPO = Path(__file__).resolve().parents[2]


def test_the_smoke_run_plays_every_newcomer_with_and_without_the_crowds_prior(
        tmp_path, tiny_generator):
    work, out = tmp_path / "work", tmp_path / "out" / "headstart"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench" / "headstart.py"), "--smoke",
         "--checkpoint", str(tiny_generator), "--work", str(work), "--out", str(out)],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    # 2 newcomers × 2 groups × 2 searches × without/with the prior, each once.
    assert len(rows) == 16
    assert {(r["group"], r["algorithm"], r["prior"], r["newcomer"]) for r in rows} == {
        (g, a, p, n) for g in ("sharing", "unrelated") for a in ("preference", "axis")
        for p in ("without", "with") for n in ("0", "1")}
    for row in rows:
        assert 0 <= int(row["rounds"]) <= 6 and float(row["final_distance"]) >= 0
        assert row["rounds_to_r"] == "" or int(row["rounds_to_r"]) <= int(row["rounds"])
    # A newcomer keeps their class and seed (so their target) with and without the prior.
    pairs = {}
    for r in rows:
        pairs.setdefault((r["group"], r["algorithm"], r["newcomer"]), set()).add(
            (r["image_class"], r["seed"]))
    assert all(len(kept) == 1 for kept in pairs.values())
    # Every session of the server with --prior names the crowd's model, none of the other's.
    model = work / "runs" / "crowd-choice" / "estimator.pt"
    priors = InteractionLog(work / "newcomers-with.db").priors()
    assert len(priors) == 8 and {p.sha256 for p in priors.values()} == {file_sha256(model)}
    assert set(InteractionLog(work / "newcomers-without.db").priors().values()) == {None}
    table = out.with_suffix(".md").read_text()
    assert "| sharing | preference |" in table and "| unrelated | axis |" in table
    assert "most a prior can save" in table

    # Run again: everything is found in the work folder, nothing is played twice.
    again = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench" / "headstart.py"), "--smoke",
         "--checkpoint", str(tiny_generator), "--work", str(work), "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "headstart: " not in again.stdout
    assert len(InteractionLog(work / "newcomers-with.db").priors()) == 8
