"""The four-choice HTTP API (FastAPI): sessions, picks, undo, images, history.

``create_app(generator, log)`` serves any ``(latents [B, n], labels [B]) →
images in [-1, 1]`` generator. A session is its settings (algorithm, class,
seed, search space) plus its picks in the ``InteractionLog``; the live search
objects are a cache, rebuilt by replaying the picks after a restart, so a
killed server continues every session at the round where it stopped.

Every pick carries its round: the same pick again is a no-op, another pick
for an answered round is 409, a pick outside 0–3 is 422, an unknown session
is 404. Nothing in a request names a file.
"""

from __future__ import annotations

import io
import threading
from typing import Literal

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torchvision.utils import save_image

from pirtune.models.acgan import render
from pirtune.search import AxisSearch, FourChoiceSearch, PreferenceSearch, RandomSearch
from pirtune.search.space import SearchSpace, principal_directions
from pirtune.webapp.page import PAGE
from pirtune.webapp.store import ConflictError, InteractionLog, UnknownSessionError

ALGORITHMS = {"preference": PreferenceSearch, "axis": AxisSearch, "random": RandomSearch}


class NewSession(BaseModel):
    """What a person chooses before searching."""

    model_config = ConfigDict(extra="forbid")
    algorithm: Literal["preference", "axis", "random"] = "preference"
    space: Literal["full", "ganspace"] = "ganspace"
    k: int = Field(8, ge=3, le=512, description="GANSpace directions searched")
    image_class: int = Field(0, ge=0, description="the class of every image in the session")
    seed: int = Field(0, ge=0, le=2**31 - 1)


class Choice(BaseModel):
    """A pick: the round it answers and the candidate (0–3: +u, −u, +v, −v)."""

    model_config = ConfigDict(extra="forbid")
    round: int = Field(ge=1)
    index: int = Field(ge=0, le=3)


class State(BaseModel):
    """Where a session stands: the open round and the images to show."""

    session_id: str
    round: int
    current: str
    candidates: list[str]
    finished: bool


def _search(settings: dict) -> FourChoiceSearch:
    start = np.zeros(len(settings["basis"]))
    if settings["algorithm"] == "preference":
        return PreferenceSearch(start)
    return ALGORITHMS[settings["algorithm"]](start, seed=settings["seed"])


def create_app(generator: nn.Module, log: InteractionLog) -> FastAPI:
    """The API over ``generator`` with sessions kept in ``log``."""
    app = FastAPI(title="pirtune four-choice search")
    live: dict[str, tuple[FourChoiceSearch, SearchSpace, threading.Lock]] = {}
    live_lock = threading.Lock()

    def session(session_id: str) -> tuple[FourChoiceSearch, SearchSpace, threading.Lock]:
        with live_lock:
            if session_id in live:
                return live[session_id]
            try:
                settings = log.session(session_id)["settings"]
            except UnknownSessionError as err:
                raise HTTPException(404, str(err)) from err
            space = SearchSpace(np.array(settings["origin"]), np.array(settings["basis"]))
            search = _search(settings)
            for pick in log.choices(session_id):  # replay: the same picks, the same state
                search.propose()
                search.choose(pick)
            live[session_id] = (search, space, threading.Lock())
            return live[session_id]

    def state(session_id: str) -> State:
        search, _, _ = session(session_id)
        proposal = search.propose()
        info = log.session(session_id)
        log.record_shown(session_id, proposal.round, space_latents(session_id, proposal.points),
                         info["class"])
        base = f"/api/sessions/{session_id}/images"
        return State(session_id=session_id, round=proposal.round, current=f"{base}/current.png",
                     candidates=[f"{base}/{proposal.round}/{slot}.png" for slot in range(4)],
                     finished=info["finished"] is not None)

    def space_latents(session_id: str, points: np.ndarray) -> list[list[float]]:
        _, space, _ = session(session_id)
        return space.to_latent(points).tolist()

    def png(latent: np.ndarray, image_class: int) -> Response:
        z = torch.as_tensor(np.atleast_2d(latent), dtype=torch.float32)
        image = render(generator, z, torch.full((1,), image_class))[0]
        buffer = io.BytesIO()
        save_image(image, buffer, format="png")
        return Response(buffer.getvalue(), media_type="image/png")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.post("/api/sessions", response_model=State)
    def start(request: NewSession) -> State:
        if request.image_class >= generator.num_classes:
            raise HTTPException(422, f"image_class {request.image_class} does not exist; "
                                     f"choose 0..{generator.num_classes - 1}")
        rng = np.random.default_rng(request.seed)
        origin = rng.standard_normal(generator.latent_dim)
        basis = (principal_directions(generator, request.k, seed=request.seed)
                 if request.space == "ganspace" else np.eye(generator.latent_dim))
        settings = {"algorithm": request.algorithm, "seed": request.seed,
                    "origin": origin.tolist(), "basis": basis.tolist()}
        session_id = log.create_session(request.algorithm, request.image_class, settings)
        return state(session_id)

    @app.get("/api/sessions/{session_id}", response_model=State)
    def get(session_id: str) -> State:
        return state(session_id)

    @app.post("/api/sessions/{session_id}/choices", response_model=State)
    def choose(session_id: str, choice: Choice) -> State:
        search, _, lock = session(session_id)
        with lock:
            try:
                new = log.record_choice(session_id, choice.round, choice.index)
            except ConflictError as err:
                raise HTTPException(409, str(err)) from err
            if new:
                search.propose()
                search.choose(choice.index)
        return state(session_id)

    @app.post("/api/sessions/{session_id}/undo", response_model=State)
    def undo(session_id: str) -> State:
        session(session_id)
        with live_lock:
            log.undo(session_id)
            live.pop(session_id, None)  # rebuilt from the remaining picks
        return state(session_id)

    @app.post("/api/sessions/{session_id}/finish", response_model=State)
    def finish(session_id: str) -> State:
        session(session_id)
        log.finish(session_id)
        return state(session_id)

    @app.get("/api/sessions/{session_id}/history")
    def history(session_id: str) -> dict:
        session(session_id)
        return {"session_id": session_id, "choices": log.choices(session_id)}

    @app.get("/api/sessions/{session_id}/images/current.png")
    def current_image(session_id: str) -> Response:
        search, space, _ = session(session_id)
        return png(space.to_latent(search.current), log.session(session_id)["class"])

    @app.get("/api/sessions/{session_id}/images/{round}/{slot}.png")
    def candidate_image(session_id: str, round: int, slot: int) -> Response:
        search, space, _ = session(session_id)
        proposal = search.propose()
        if round != proposal.round or not 0 <= slot <= 3:
            raise HTTPException(404, f"round {round} slot {slot} is not on show "
                                     f"(round {proposal.round} is)")
        return png(space.to_latent(proposal.points[slot]), log.session(session_id)["class"])

    return app
