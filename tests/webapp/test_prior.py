"""A head start: earlier people's choice model as the prior of a new session (``--prior``)."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from pirtune.estimator.choice import ChoiceNetwork, FrozenChoiceModel
from pirtune.estimator.files import save_choice_model, save_estimator
from pirtune.estimator.module import PIREstimatorModule
from pirtune.estimator.network import PIREstimator
from pirtune.files import file_sha256
from pirtune.models.bundle import load_sampler, render
from pirtune.models.networks import Generator
from pirtune.search.space import SearchSpace
from pirtune.webapp import InteractionLog, export_pir_dataset
from pirtune.webapp.app import create_app
from pirtune.webapp.export import bundle_sha256
from pirtune.webapp.prior import MIN_ESS, CrowdPrior, crowd_weights, tilted_start
from pirtune.webapp.serve import main as serve_main
from pirtune.webapp.store import Prior

NETWORK = {"_target_": "pirtune.estimator.network.PIREstimator", "backbone": "small_cnn",
           "bins": 2, "resolution": 16, "pretrained": False}


class BlueLogits(nn.Module):
    """Two logits whose difference is 5000 × the image's blue share: a crowd that likes blue
    (the random generator's images differ in it by about 0.002)."""

    bins = 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        blue = images[:, 2].mean((1, 2)) / images.mean((1, 2, 3)).clamp_min(1e-6) / 3
        return torch.stack([torch.zeros_like(blue), 5000 * blue], 1)


def blue_share(images: torch.Tensor) -> torch.Tensor:
    return images[:, 2].mean((1, 2)) / images.mean((1, 2, 3)) / 3


@pytest.fixture
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(latent_dim=16, num_classes=2, resolution=16, width=0.125).eval()


def _prior_file(path, generators: list[str] | None) -> None:
    torch.manual_seed(1)
    model = FrozenChoiceModel(ChoiceNetwork.from_config(NETWORK), torch.zeros(8))
    extra = {} if generators is None else {"generators": generators}
    save_choice_model(model, NETWORK, path, **extra)


@pytest.fixture
def prior_file(tmp_path, tiny_generator):
    """A choice model of picks among the tiny generator's images (untrained: any utility)."""
    path = tmp_path / "prior.pt"
    _prior_file(path, [bundle_sha256(tiny_generator)])
    return path


def test_the_crowds_weights_are_luce_at_temperature_one_unless_too_few_draws_count():
    # w ∝ i: an effective sample of (Σi)²/Σi² = 75 draws, enough at τ = 1.
    i = np.arange(1, 101, dtype=float)
    weights, temperature = crowd_weights(np.log(i))
    assert temperature == 1.0
    np.testing.assert_allclose(weights, i / i.sum(), rtol=1e-12)
    # Utilities 10 apart: at τ = 1 one draw takes it all; τ rises to the first step that keeps
    # MIN_ESS effective draws.
    u = 10 * np.arange(100.0)
    weights, temperature = crowd_weights(u)
    assert temperature > 1 and 1 / np.sum(weights ** 2) >= MIN_ESS * (1 - 1e-9)
    below = np.exp((u - u.max()) / (temperature / 1.25))
    assert 1 / np.sum((below / below.sum()) ** 2) < MIN_ESS
    np.testing.assert_allclose(weights, np.exp((u - u.max()) / temperature)
                               / np.exp((u - u.max()) / temperature).sum(), rtol=1e-12)


def test_the_start_is_the_weighted_mean_and_a_widened_spread_in_the_sessions_coordinates():
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((50, 6)) + 2.0
    weights = rng.random(50)
    weights /= weights.sum()
    origin = rng.standard_normal(6)
    basis = SearchSpace.subspace(origin, rng.standard_normal((3, 6))).basis
    start = tilted_start(latents, weights, origin, basis)
    for j in range(3):   # coordinate by coordinate, by hand
        y = [sum((z[d] - origin[d]) * basis[j, d] for d in range(6)) for z in latents]
        mean = sum(w * v for w, v in zip(weights, y, strict=True))
        variance = sum(w * (v - mean) ** 2 for w, v in zip(weights, y, strict=True))
        own = -sum(basis[j, d] * origin[d] for d in range(6))   # N(0, I)'s centre
        assert start.centre[j] == pytest.approx(mean, rel=1e-9)
        assert start.sd[j] == pytest.approx(np.sqrt(variance + 0.5 * (mean - own) ** 2),
                                            rel=1e-9)


@pytest.mark.parametrize("algorithm", ["preference", "axis"])
def test_a_prior_starts_the_search_from_what_the_crowd_picked(tmp_path, generator, algorithm):
    """A crowd that likes blue: sessions started from its prior show bluer first images, log
    the prior, and replay on a server without the prior exactly as they were."""
    prior = CrowdPrior(FrozenChoiceModel(ChoiceNetwork(BlueLogits()), torch.zeros(1)),
                       generator, "blue.pt", "ab" * 32, draws=512)
    plain_log, prior_log = InteractionLog(tmp_path / "plain.db"), InteractionLog(tmp_path / "p.db")
    plain = TestClient(create_app(generator, plain_log))
    headed = TestClient(create_app(generator, prior_log, prior=prior))
    firsts = {"plain": [], "prior": []}
    for seed in range(8):
        request = {"algorithm": algorithm, "space": "full", "image_class": seed % 2,
                   "seed": seed}
        for name, client, log in (("plain", plain, plain_log), ("prior", headed, prior_log)):
            state = client.post("/api/sessions", json=request).json()
            assert state["prior"] is (name == "prior")
            session = log.session(state["session_id"])
            assert session["prior"] == (Prior("ab" * 32, "blue.pt") if name == "prior" else None)
            firsts[name].append(log.rounds(state["session_id"])[1].current)
            if name == "prior":   # the full space's start is the crowd's weighted mean latent
                pool = prior.pools[seed % 2]
                np.testing.assert_allclose(firsts[name][-1], pool.weights @ pool.latents,
                                           atol=1e-9)
    blue = {name: blue_share(render(generator, torch.tensor(latents, dtype=torch.float32),
                                    torch.arange(8) % 2)).mean().item()
            for name, latents in firsts.items()}
    pool_blue = blue_share(render(generator, torch.tensor(prior.pools[0].latents[:256],
                                                          dtype=torch.float32),
                                  torch.zeros(256, dtype=torch.long)))
    # The prior's first images are bluer than the plain start (G at N(0, I)'s centre) by half
    # an SD of the generator's draws (a prior of the least blue draws is as much less blue).
    assert blue["prior"] - blue["plain"] > 0.5 * pool_blue.std().item(), blue

    # Three picks, then a server without the prior (a restart) replays the same candidates.
    session = headed.post("/api/sessions", json={"algorithm": algorithm, "seed": 11}).json()
    for round_ in (1, 2, 3):
        session = headed.post(f"/api/sessions/{session['session_id']}/choices",
                              json={"round": round_, "index": round_ % 4}).json()
    again = TestClient(create_app(generator, prior_log)).get(
        f"/api/sessions/{session['session_id']}").json()
    assert again == session and again["prior"] is True


def test_a_prior_started_session_through_a_real_server_survives_kill_9(
        serve, tmp_path, tiny_generator, prior_file):
    db = tmp_path / "log.db"
    server, base = serve(db, options=["--checkpoint", str(tiny_generator),
                                      "--prior", str(prior_file)])
    states = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for algorithm in ("preference", "axis"):
            state = client.post("/api/sessions", json={"algorithm": algorithm, "k": 4,
                                                       "seed": 5}).json()
            assert state["prior"] is True
            for round_ in (1, 2):
                state = client.post(f"/api/sessions/{state['session_id']}/choices",
                                    json={"round": round_, "index": 1}).json()
            states[algorithm] = state
    log = InteractionLog(db)
    for algorithm, state in states.items():
        info = log.session(state["session_id"])
        assert info["prior"] == Prior(file_sha256(prior_file), "prior.pt")
        settings = info["settings"]
        origin, basis = np.array(settings["origin"]), np.array(settings["basis"])
        start = np.array(settings["preference"]["start"])
        assert len(settings["preference"]["prior_sd"]) == 4
        assert not np.allclose(start, -basis @ origin)   # not the generator's own centre
        if algorithm == "axis":
            np.testing.assert_array_equal(settings["axis"]["start"], start)
            np.testing.assert_allclose(log.rounds(state["session_id"])[1].current,
                                       origin + start @ basis, atol=1e-9)
    server.send_signal(signal.SIGKILL)
    server.wait()
    _, base = serve(db, options=["--checkpoint", str(tiny_generator)])   # no prior now
    with httpx.Client(base_url=base, timeout=60) as client:
        for state in states.values():
            assert client.get(f"/api/sessions/{state['session_id']}").json() == state
        fresh = client.post("/api/sessions", json={"seed": 5, "k": 4}).json()
        assert fresh["prior"] is False
        client.post(f"/api/sessions/{fresh['session_id']}/choices",
                    json={"round": 1, "index": 0})
    # The export names each round's prior: the file's checksum, or nothing.
    out = export_pir_dataset(log, tmp_path / "export", load_sampler(tiny_generator)[0])
    with open(out / "rounds.csv") as f:
        priors = {row["session_id"]: row["prior"] for row in csv.DictReader(f)}
    assert priors == {**{s["session_id"]: file_sha256(prior_file) for s in states.values()},
                      fresh["session_id"]: ""}


def _binned(path) -> None:
    network = {**NETWORK, "bins": 100}
    save_estimator(PIREstimatorModule(PIREstimator("small_cnn", 100, 16)), network, 0.01, path)


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist; give the estimator.pt that pirtune-train data=interactions"),
    ("corrupt", "cannot be read (UnpicklingError); it is damaged or not a pirtune estimator"),
    ("binned", "is a PIR estimator, not a choice model of people's picks"),
    ("unrecorded", "does not record which generator's images it learnt from"),
    ("other", f"learnt from the picks of generator(s) sha256 {'0' * 12}, not the served "
              "generator"),
])
def test_a_bad_prior_is_refused_at_start_up_in_one_line(tmp_path, tiny_generator, capsys, case,
                                                        message):
    path = tmp_path / "prior.pt"
    if case == "corrupt":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif case == "binned":
        _binned(path)
    elif case != "missing":
        _prior_file(path, {"unrecorded": None, "other": ["0" * 64]}[case])
    with pytest.raises(SystemExit) as exit_:
        serve_main(["--checkpoint", str(tiny_generator), "--db", str(tmp_path / "log.db"),
                    "--prior", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pirtune-serve: error: --prior {path} ") and message in err
    assert err.count("\n") == 1 and "fit" in err.split(";")[-1]
    assert not (tmp_path / "log.db").exists()   # refused before anything was served


def test_the_command_refuses_a_damaged_prior_without_a_traceback(tmp_path, tiny_generator):
    path = tmp_path / "prior.pt"
    path.write_bytes(b"PK\x03\x04 half a zip")
    result = subprocess.run([sys.executable, "-m", "pirtune.webapp.serve", "--checkpoint",
                             str(tiny_generator), "--db", str(tmp_path / "log.db"), "--prior",
                             str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith(f"pirtune-serve: error: --prior {path} cannot be read")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
