"""The four-choice HTTP API (FastAPI): sessions, picks, undo, finish, images, history.

``create_app(generator, log)`` serves any ``(latents [B, n], labels [B]) →
images in [-1, 1]`` generator. A session is its settings (algorithm, class,
seed, search space) plus its picks in the ``InteractionLog``; the live search
objects are a cache, rebuilt by replaying the picks after a restart, so a
killed server continues every session at the round where it stopped.

Every pick carries its round: the same pick again is a no-op, another pick
for an answered round is 409, a pick outside 0–3 is 422, an unknown session
is 404, a finished session takes no more picks (409). Request bodies over
``MAX_BODY_BYTES`` are refused (413) and malformed ones are 422. Nothing in a
request names a file.

A round's five images (the current one and the four candidates) are rendered
in one batch when the first of them, or the final description, is asked for,
and kept until the next pick, under the session's lock: concurrent sessions
render in parallel, and one session's requests never see another round's
state.
"""

from __future__ import annotations

import functools
import io
import threading
from dataclasses import dataclass, field
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
from pirtune.search.space import PrincipalDirections, SearchSpace
from pirtune.webapp.describe import describe
from pirtune.webapp.page import PAGE
from pirtune.webapp.store import ConflictError, InteractionLog, UnknownSessionError

ALGORITHMS = {"preference": PreferenceSearch, "axis": AxisSearch, "random": RandomSearch}
# The largest body the API takes: a pick or a new session is well under 200 bytes.
MAX_BODY_BYTES = 4096


class NewSession(BaseModel):
    """What a person chooses before searching."""

    model_config = ConfigDict(extra="forbid")
    algorithm: Literal["preference", "axis", "random"] = "preference"
    space: Literal["full", "ganspace"] = "ganspace"
    k: int = Field(8, ge=3, le=512, description="GANSpace directions searched")
    image_class: int = Field(0, ge=0, description="the class of every image in the session")
    seed: int = Field(0, ge=0, le=2**31 - 1,
                      description="the starting image, and the axis/random searches' draws")


class Choice(BaseModel):
    """A pick: the round it answers and the candidate (0–3: +u, −u, +v, −v)."""

    model_config = ConfigDict(extra="forbid")
    round: int = Field(ge=1)
    index: int = Field(ge=0, le=3)


class State(BaseModel):
    """Where a session stands: the open round, the images to show, and once finished
    the final image's description."""

    session_id: str
    round: int
    current: str
    candidates: list[str]
    finished: bool
    description: str | None = None


class History(BaseModel):
    """A session's picks in round order, and the picks an undo took back (round, slot)."""

    session_id: str
    algorithm: str
    image_class: int
    choices: list[int]
    undone: list[tuple[int, int]]
    finished: bool


class Info(BaseModel):
    """What the page needs to know about the generator behind the API."""

    classes: list[str]
    algorithms: list[str]
    resolution: int


@dataclass
class _Live:
    """A session's search, rebuilt from the log, and its round's rendered images."""

    search: FourChoiceSearch
    space: SearchSpace
    cls: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    rendered_round: int = 0   # the round whose images these are (the open one)
    images: torch.Tensor | None = None          # [5, 3, R, R]: current, then slots 0–3
    pngs: dict[str, bytes] = field(default_factory=dict)


def _preference_prior(origin: np.ndarray, basis: np.ndarray) -> dict:
    """PreferenceSearch's settings for people: the prior that the target is a typical latent.

    The person wants an image the generator draws, z* ~ N(0, I), so in the
    session's coordinates (z = origin + c·basis) the target is c* ~ N(−basis·origin,
    I): the prior is centred there with SD 1, and the first image shown is its
    centre. Candidates step one expected distance (``step_scale`` 1, not the
    library's 2), which keeps them about two SDs out at the start: further out the
    shipped generator draws mostly black or saturated images that no one would
    pick, while for the quadrant a pick reveals the step does not matter.
    """
    return {"start": (-basis @ origin).tolist(), "prior_sd": 1.0, "step_scale": 1.0}


def _search(settings: dict) -> FourChoiceSearch:
    """The session's search, from its stored settings (the same settings, the same search)."""
    dim = len(settings["basis"])
    if settings["algorithm"] == "preference":
        prior = settings.get("preference", {})  # logs from before the prior was stored
        return PreferenceSearch(np.array(prior.get("start", np.zeros(dim))),
                                prior_sd=prior.get("prior_sd", np.sqrt(2)),
                                step_scale=prior.get("step_scale", 2.0))
    return ALGORITHMS[settings["algorithm"]](np.zeros(dim), seed=settings["seed"])


def _png(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    save_image(image, buffer, format="png")
    return buffer.getvalue()


def create_app(generator: nn.Module, log: InteractionLog,
               class_names: list[str] | None = None) -> FastAPI:
    """The API and page over ``generator`` (in eval mode) with sessions kept in ``log``.

    ``class_names`` label the generator's classes on the page and in
    descriptions (default "class 0", "class 1", …).
    """
    names = class_names or [f"class {c}" for c in range(generator.num_classes)]
    if len(names) != generator.num_classes:
        raise ValueError(f"{len(names)} class names for {generator.num_classes} classes")
    app = FastAPI(title="pirtune four-choice search", max_body_size=MAX_BODY_BYTES)
    live: dict[str, _Live] = {}
    live_lock = threading.Lock()

    # One PCA at start-up, every session's k from it.
    directions = functools.cache(PrincipalDirections(generator).directions)

    def stored(session_id: str) -> dict:
        """The session's row in the log; 404 if there is none."""
        try:
            return log.session(session_id)
        except UnknownSessionError as err:
            raise HTTPException(404, str(err)) from err

    def session(session_id: str) -> _Live:
        with live_lock:
            if session_id not in live:
                info = stored(session_id)
                settings = info["settings"]
                search = _search(settings)
                for pick in log.choices(session_id):  # replay: the same picks, the same state
                    search.propose()
                    search.choose(pick)
                live[session_id] = _Live(search, SearchSpace(np.array(settings["origin"]),
                                                             np.array(settings["basis"])),
                                         info["class"])
            return live[session_id]

    def rendered(entry: _Live) -> _Live:
        """``entry`` with the open round's five images rendered (caller holds its lock)."""
        proposal = entry.search.propose()
        if entry.rendered_round != proposal.round:
            points = np.vstack([entry.search.current, proposal.points])
            z = torch.as_tensor(entry.space.to_latent(points), dtype=torch.float32)
            with torch.inference_mode():
                entry.images = render(generator, z, torch.full((len(z),), entry.cls))
            entry.pngs = {name: _png(image) for name, image in
                          zip(["current", "0", "1", "2", "3"], entry.images, strict=True)}
            entry.rendered_round = proposal.round
        return entry

    def state(session_id: str) -> State:
        entry = session(session_id)
        with entry.lock:
            proposal = entry.search.propose()
            log.record_shown(session_id, proposal.round,
                             entry.space.to_latent(proposal.points).tolist(), entry.cls)
            finished = log.session(session_id)["finished"] is not None
            description = (describe(rendered(entry).images[0], names[entry.cls],
                                    proposal.round - 1) if finished else None)
        base = f"/api/sessions/{session_id}/images"
        return State(session_id=session_id, round=proposal.round,
                     current=f"{base}/{proposal.round}/current.png",
                     candidates=[f"{base}/{proposal.round}/{slot}.png" for slot in range(4)],
                     finished=finished, description=description)

    def open_session(session_id: str) -> _Live:
        entry = session(session_id)
        if log.session(session_id)["finished"] is not None:
            raise HTTPException(409, f"session {session_id} is finished; start a new one")
        return entry

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.get("/api/info", response_model=Info)
    def info() -> Info:
        return Info(classes=names, algorithms=list(ALGORITHMS),
                    resolution=generator.resolution)

    @app.post("/api/sessions", response_model=State)
    def start(request: NewSession) -> State:
        if request.image_class >= generator.num_classes:
            raise HTTPException(422, f"image_class {request.image_class} does not exist; "
                                     f"choose 0..{generator.num_classes - 1}")
        rng = np.random.default_rng(request.seed)
        origin = rng.standard_normal(generator.latent_dim)
        if request.k > generator.latent_dim:
            raise HTTPException(422, f"k {request.k} is more directions than the latent has; "
                                     f"choose 3..{generator.latent_dim}")
        basis = (directions(request.k) if request.space == "ganspace"
                 else np.eye(generator.latent_dim))
        settings = {"algorithm": request.algorithm, "seed": request.seed,
                    "origin": origin.tolist(), "basis": basis.tolist(),
                    "preference": _preference_prior(origin, basis)}
        session_id = log.create_session(request.algorithm, request.image_class, settings)
        return state(session_id)

    @app.get("/api/sessions/{session_id}", response_model=State)
    def get(session_id: str) -> State:
        return state(session_id)

    @app.post("/api/sessions/{session_id}/choices", response_model=State)
    def choose(session_id: str, choice: Choice) -> State:
        entry = open_session(session_id)
        with entry.lock:
            try:
                new = log.record_choice(session_id, choice.round, choice.index)
            except ConflictError as err:
                raise HTTPException(409, str(err)) from err
            if new:
                entry.search.propose()
                entry.search.choose(choice.index)
        return state(session_id)

    @app.post("/api/sessions/{session_id}/undo", response_model=State)
    def undo(session_id: str) -> State:
        open_session(session_id)
        with live_lock:
            log.undo(session_id)
            live.pop(session_id, None)  # rebuilt from the remaining picks
        return state(session_id)

    @app.post("/api/sessions/{session_id}/finish", response_model=State)
    def finish(session_id: str) -> State:
        session(session_id)
        log.finish(session_id)
        return state(session_id)

    @app.get("/api/sessions/{session_id}/history", response_model=History)
    def history(session_id: str) -> History:
        info = stored(session_id)
        return History(session_id=session_id, algorithm=info["algorithm"],
                       image_class=info["class"], choices=log.choices(session_id),
                       undone=log.undone(session_id), finished=info["finished"] is not None)

    @app.get("/api/sessions/{session_id}/images/{round}/{name}.png")
    def image(session_id: str, round: int, name: Literal["current", "0", "1", "2", "3"]
              ) -> Response:
        entry = session(session_id)
        with entry.lock:
            if round != entry.search.propose().round:
                raise HTTPException(404, f"round {round} is not on show (round "
                                         f"{entry.search.propose().round} is)")
            return Response(rendered(entry).pngs[name], media_type="image/png",
                            headers={"Cache-Control": "private, max-age=3600"})

    return app
