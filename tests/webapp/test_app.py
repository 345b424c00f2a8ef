"""The HTTP API through FastAPI's test client: a whole session, bad input, restarts."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from pirtune.models.networks import Generator
from pirtune.search import SimulatedPerson
from pirtune.search.space import SearchSpace
from pirtune.webapp import InteractionLog
from pirtune.webapp.app import create_app


@pytest.fixture
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(latent_dim=16, num_classes=2, resolution=16, width=0.125).eval()


def _space(log: InteractionLog, session_id: str) -> SearchSpace:
    settings = log.session(session_id)["settings"]
    return SearchSpace(np.array(settings["origin"]), np.array(settings["basis"]))


def test_a_simulated_person_runs_a_whole_session(tmp_path, generator):
    log = InteractionLog(tmp_path / "log.db")
    client = TestClient(create_app(generator, log))
    state = client.post("/api/sessions", json={"algorithm": "preference", "k": 4,
                                               "image_class": 1, "seed": 3}).json()
    session_id = state["session_id"]
    assert state["round"] == 1 and len(state["candidates"]) == 4
    space = _space(log, session_id)
    person = SimulatedPerson(np.random.default_rng(0).standard_normal(4))
    for round_ in range(1, 7):
        shown = [s for s in log.shown() if s.round == round_]
        points = space.to_coords(np.array([s.latent for s in shown]))
        pick = person.pick(points)
        state = client.post(f"/api/sessions/{session_id}/choices",
                            json={"round": round_, "index": pick}).json()
        assert state["round"] == round_ + 1
    image = client.get(state["candidates"][0])
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(state["current"]).status_code == 200
    assert len(client.get(f"/api/sessions/{session_id}/history").json()["choices"]) == 6
    assert client.post(f"/api/sessions/{session_id}/finish").json()["finished"] is True
    assert "/api/sessions" in client.get("/openapi.json").json()["paths"]


def test_bad_input_gets_a_clear_status_and_changes_nothing(tmp_path, generator):
    log = InteractionLog(tmp_path / "log.db")
    client = TestClient(create_app(generator, log))
    session_id = client.post("/api/sessions", json={"k": 4}).json()["session_id"]
    url = f"/api/sessions/{session_id}/choices"
    assert client.post("/api/sessions/nope/choices", json={"round": 1, "index": 0}
                       ).status_code == 404
    assert client.post(url, json={"round": 1, "index": 4}).status_code == 422
    assert client.post(url, json={"round": 1, "index": 0, "path": "/etc"}).status_code == 422
    assert client.post("/api/sessions", json={"image_class": 7}).status_code == 422
    assert client.post(url, json={"round": 1, "index": 2}).json()["round"] == 2
    again = client.post(url, json={"round": 1, "index": 2})     # the same pick: idempotent
    assert again.status_code == 200 and again.json()["round"] == 2
    assert client.post(url, json={"round": 1, "index": 3}).status_code == 409
    assert log.choices(session_id) == [2]
    # Undo takes the pick back; the round is open again.
    assert client.post(f"/api/sessions/{session_id}/undo").json()["round"] == 1
    assert log.choices(session_id) == []
    # Oversized, malformed and mistyped bodies are refused before anything runs.
    big = client.post(url, content=b'{"round": 1, "index": 0, "pad": "' + b"x" * 5000 + b'"}',
                      headers={"Content-Type": "application/json"})
    assert big.status_code == 413
    for body in (b'{"round": 1, "index":', b"[1, 0]", b'{"round": "one", "index": 0}',
                 b'{"round": 0, "index": 0}', b""):
        assert client.post(url, content=body, headers={"Content-Type": "application/json"}
                           ).status_code == 422, body
    # Images exist only for the round on show, under the five names.
    assert client.get(f"/api/sessions/{session_id}/images/2/0.png").status_code == 404
    assert client.get(f"/api/sessions/{session_id}/images/1/4.png").status_code == 422
    assert client.get(f"/api/sessions/{session_id}/images/1/..%2Fetc.png").status_code in (
        404, 422)
    assert log.choices(session_id) == [] and len(log.shown()) == 4   # round 1, once
    history = client.get(f"/api/sessions/{session_id}/history").json()
    assert history["choices"] == [] and history["undone"] == [[1, 2]]
    assert history["finished"] is False


def test_finishing_describes_the_image_and_closes_the_session(tmp_path, generator):
    log = InteractionLog(tmp_path / "log.db")
    client = TestClient(create_app(generator, log, class_names=["coast", "mountain"]))
    assert client.get("/api/info").json() == {
        "classes": ["coast", "mountain"], "algorithms": ["preference", "axis", "random"],
        "resolution": 16}
    state = client.post("/api/sessions", json={"k": 4, "image_class": 1}).json()
    session_id = state["session_id"]
    assert state["description"] is None
    for round_ in (1, 2, 3):
        state = client.post(f"/api/sessions/{session_id}/choices",
                            json={"round": round_, "index": round_ % 4}).json()
    final = client.post(f"/api/sessions/{session_id}/finish").json()
    assert final["finished"] is True and final["round"] == 4
    assert final["description"].startswith("A ") and "mountain scene" in final["description"]
    assert final["description"].endswith("found in 3 picks.")
    assert client.get(final["current"]).content[:4] == b"\x89PNG"
    # A finished session takes no more picks and no undo; finishing again is harmless.
    assert client.post(f"/api/sessions/{session_id}/choices",
                       json={"round": 4, "index": 0}).status_code == 409
    assert client.post(f"/api/sessions/{session_id}/undo").status_code == 409
    assert client.post(f"/api/sessions/{session_id}/finish").json() == final
    assert log.choices(session_id) == [1, 2, 3]


def test_a_restarted_server_continues_every_session(tmp_path, generator):
    log = InteractionLog(tmp_path / "log.db")
    client = TestClient(create_app(generator, log))
    session_id = client.post("/api/sessions", json={"algorithm": "axis", "k": 4}).json()[
        "session_id"]
    for round_, pick in enumerate([0, 3, 1], start=1):
        state = client.post(f"/api/sessions/{session_id}/choices",
                            json={"round": round_, "index": pick}).json()
    before = client.get(state["candidates"][2]).content
    log.close()
    restarted = TestClient(create_app(generator, InteractionLog(tmp_path / "log.db")))
    state = restarted.get(f"/api/sessions/{session_id}").json()
    assert state["round"] == 4
    assert restarted.get(state["candidates"][2]).content == before  # the same four on show


def test_a_killed_server_continues_the_session_with_nothing_lost(tmp_path, serve):
    db = tmp_path / "log.db"
    server, base = serve(db)
    url = f"{base}/api/sessions"
    session_id = httpx.post(url, json={"k": 4}, timeout=30).json()["session_id"]
    for round_, pick in enumerate([1, 0, 2], start=1):
        state = httpx.post(f"{url}/{session_id}/choices",
                           json={"round": round_, "index": pick}, timeout=30).json()
    shown = httpx.get(f"{base}{state['candidates'][0]}", timeout=30).content
    server.send_signal(signal.SIGKILL)
    server.wait()
    serve(db, int(base.rsplit(":", 1)[1]))      # the same port, the same database
    state = httpx.get(f"{url}/{session_id}", timeout=30).json()
    assert state["round"] == 4
    assert httpx.get(f"{base}{state['candidates'][0]}", timeout=30).content == shown
    state = httpx.post(f"{url}/{session_id}/choices", json={"round": 4, "index": 3},
                       timeout=30).json()
    assert state["round"] == 5
    assert httpx.get(f"{url}/{session_id}/history", timeout=30).json()["choices"] == [1, 0, 2, 3]


def test_the_page_is_served_and_drives_the_api(tmp_path, generator):
    client = TestClient(create_app(generator, InteractionLog(tmp_path / "log.db")))
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    # Four candidates on the two axes around the current image, undo, finish, download.
    for element in ('id="c0"', 'id="c1"', 'id="c2"', 'id="c3"', 'id="current"', 'id="undo"',
                    'id="finish"', 'id="download"', 'id="path"'):
        assert element in html
    for endpoint in ("/api/sessions", "/choices", "/undo", "/finish"):
        assert endpoint in html
    assert "http://" not in html and "https://" not in html  # nothing from the network


def test_twenty_concurrent_people_keep_separate_sessions(tmp_path, serve):
    db = tmp_path / "log.db"
    _, base = serve(db)

    def person(i: int) -> tuple[str, list[int], list[int]]:
        with httpx.Client(base_url=base, timeout=60) as client:
            state = client.post("/api/sessions", json={"k": 4, "seed": i,
                                                       "image_class": i % 2}).json()
            picks = [(i * 7 + r * (i % 3 + 1)) % 4 for r in range(1, 6)]
            for round_, pick in enumerate(picks, start=1):
                for url in (state["current"], *state["candidates"]):
                    assert client.get(url).content[:4] == b"\x89PNG"
                state = client.post(f"/api/sessions/{state['session_id']}/choices",
                                    json={"round": round_, "index": pick}).json()
                assert state["round"] == round_ + 1
            history = client.get(f"/api/sessions/{state['session_id']}/history").json()
            return state["session_id"], picks, history["choices"]

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(person, range(20)))
    assert len({session_id for session_id, _, _ in results}) == 20
    for _, picks, history in results:
        assert history == picks
    log = InteractionLog(db)
    for i, (session_id, picks, _) in enumerate(results):
        assert log.choices(session_id) == picks
        assert log.session(session_id)["class"] == i % 2
    assert len(log.shown()) == 20 * 6 * 4   # rounds 1–6 on show in every session


def test_preference_sessions_search_around_typical_images(tmp_path, generator):
    """The prior says the target is a latent the generator draws, z* ~ N(0, I)."""
    log = InteractionLog(tmp_path / "log.db")
    client = TestClient(create_app(generator, log))
    session_id = client.post("/api/sessions", json={"k": 8, "seed": 5}).json()["session_id"]
    settings = log.session(session_id)["settings"]
    origin, basis = np.array(settings["origin"]), np.array(settings["basis"])
    shown = np.array([s.latent for s in log.shown()])
    # The first image is the origin with its component in the searched directions removed
    # (the prior's centre); the candidates step one expected distance, √k·1, from it.
    centre = origin - basis.T @ (basis @ origin)
    np.testing.assert_allclose(_space(log, session_id).to_latent(
        np.array(settings["preference"]["start"])), centre, atol=1e-9)
    offsets = np.linalg.norm(basis @ (shown - centre).T, axis=0)
    assert offsets == pytest.approx(np.full(4, np.sqrt(8)), rel=0.01)  # grid: 0.6 % steps
    np.testing.assert_allclose(shown - centre, (basis.T @ (basis @ (shown - centre).T)).T,
                               atol=1e-9)   # candidates move only in the searched directions
