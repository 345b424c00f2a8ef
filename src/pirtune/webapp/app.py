"""The four-choice HTTP API (FastAPI): sessions, picks, undo, finish, images, history.

``create_app(generator, log)`` serves any ``(latents [B, n], labels [B]) →
images in [-1, 1]`` generator. A session is its settings (algorithm, class,
seed, search space, and its prior's start and spread when the server has
earlier people's choice model, ``pirtune.webapp.prior``) plus its rounds and
picks in the ``InteractionLog``, which
is the single source of truth: a round's candidates are logged once, when the
round is first shown, and what is served is what the log holds. The live
searches are a bounded cache (least recently used first out), rebuilt from
the log by replaying its logged proposals (``FourChoiceSearch.resume``), so a
killed server, an evicted session or another machine shows exactly the
candidates that were logged. A cached search is discarded as soon as the
log's version of the session (counted up by every undo) or its number of
answered rounds differs from the search's, and every request on a session
holds that session's lock.

An answer is a pick, ``{"round": r, "index": i}``, or "these look the same",
``{"round": r, "same": true}`` (``pirtune.search.feedback``; exactly one of
``index`` and ``same``). Every answer carries its round: the same answer again
is a no-op, another answer for an answered round is 409, an unknown session
is 404, a finished session takes no more answers (409). Numbers are strict
integers within range (``round`` 1–``MAX_ROUND``, ``index`` 0–3), ``same`` is
``true``: anything else is 422 with one line
that names the field, the value and what it should be. Request bodies over
``MAX_BODY_BYTES`` are refused (413). New sessions are limited per client and
in total over a sliding window (429, with ``Retry-After``). Nothing in a
request names a file.

An image's URL names its content (a digest of the generator, the class and
the latent), so a URL never shows another image and the browser may cache it
for good: after an undo, the new candidates have new URLs. A round's five
images (the current one and the four candidates) are rendered in one batch
when the first of them is asked for.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from pirtune.models.bundle import draw_latents, render
from pirtune.search import AxisSearch, FourChoiceSearch, PreferenceSearch, Proposal, RandomSearch
from pirtune.search.feedback import SAME, Feedback
from pirtune.search.space import PrincipalDirections, SearchSpace
from pirtune.search.visible import PixelMetric, Speeds, Visible, pixel_difference
from pirtune.webapp.describe import describe
from pirtune.webapp.page import PAGE
from pirtune.webapp.prior import CrowdPrior, PriorStart
from pirtune.webapp.store import (
    ConflictError,
    InteractionLog,
    Prior,
    Round,
    Status,
    UnknownSessionError,
)

ALGORITHMS = {"preference": PreferenceSearch, "axis": AxisSearch, "random": RandomSearch}
# The largest body the API takes: a pick or a new session is well under 200 bytes.
MAX_BODY_BYTES = 4096
# No session comes near it; it keeps every number far inside SQLite's 64-bit integers.
MAX_ROUND = 100_000
MAX_SCALE = 16           # the largest upscaling of the final image's download
IMAGE_NAMES = ("current", "0", "1", "2", "3")
# The first step of a learning search, in prior SDs per searched coordinate (gap 7 of issue
# 12): at 2 (the step one expected distance gives in 8 directions) half of the shipped
# generator's first candidates were near-black; at 0.75, 13 of 320, while they still differ
# from the middle image by about 36/255.
FIRST_MOVE_SD = 0.75
# Below this step (latent units) the shipped generator's candidates differ from the middle
# image by under about 1/255 on average: the search is stalled, and the page says so
# (sessions logged before steps were visible).
MIN_STEP = 0.1
# A just-noticeable difference between two of the page's images (mean absolute 8-bit
# difference, /255): below it candidates are hard to tell apart (docs/search.md, "Steps the
# eye sees"). The simulated people of scripts/bench/search.py --visible have it.
JND = 4.0
# The least visible difference between the two most alike candidates (/255; each differs
# from the candidates' centre by at least FLOOR/√2): 1.5 JND, so that rendering and the
# generator's curvature keep it above the JND (docs/search.md).
FLOOR = 6.0
# Below this scheduled difference (/255) the search has narrowed down further than anyone
# can see (the candidates are held at the JND meanwhile): it is stalled, and the page says so.
MIN_VISIBLE = 1.0


class NewSession(BaseModel):
    """What a person chooses before searching."""

    model_config = ConfigDict(extra="forbid", strict=True)
    algorithm: Literal["preference", "axis", "random"] = "preference"
    space: Literal["full", "ganspace"] = "ganspace"
    k: int = Field(8, ge=3, le=512, description="GANSpace directions searched")
    image_class: int = Field(0, ge=0, le=2**31 - 1,
                             description="the class of every image in the session")
    seed: int = Field(0, ge=0, le=2**31 - 1,
                      description="the starting image, and the axis/random searches' draws")


class Choice(BaseModel):
    """An answer: the round it answers and either the candidate picked (``index`` 0–3:
    +u, −u, +v, −v) or ``"same": true``, the four look the same (``pirtune.search.feedback``).
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    round: int = Field(ge=1, le=MAX_ROUND)
    index: int | None = Field(None, ge=0, le=3, description="the candidate picked")
    # A strict boolean (Literal[True] would take 1, which equals True), true only.
    same: bool | None = Field(None, description="true: the four candidates look the same")

    @model_validator(mode="after")
    def _one_answer(self) -> Choice:
        if self.same is False:
            raise ValueError("same can only be true; to pick, give index (0-3) instead")
        if (self.index is None) == (self.same is None):
            raise ValueError("give either index (0-3) or same: true, exactly one of them")
        return self

    @property
    def feedback(self) -> Feedback:
        return SAME if self.same else Feedback.pick(self.index)


class PathImage(BaseModel):
    """One image of the path: the start (round 0) or the pick of a round."""

    round: int
    url: str


class State(BaseModel):
    """Where a session stands: the open round, the images to show, the path of picks,
    and once finished the final image and its description.

    ``difference`` is how much the candidates differ from the middle image
    (the last pick), as the page shows them: the mean absolute difference of
    their 8-bit pixels, /255, averaged over the four. ``step`` is the
    candidates' step in the search's coordinates as a share of round 1's;
    ``stalled`` says the search can no longer make candidates that differ
    visibly (undo, or finish). ``final`` is the last picked image (the
    start image if there was no pick), and the download: ``?scale=`` 1–16.
    ``prior`` says the search started from what earlier people picked
    (``pirtune-serve --prior``).
    """

    session_id: str
    round: int
    current: str
    candidates: list[str]
    path: list[PathImage]
    difference: float
    step: float
    stalled: bool
    finished: bool
    final: str | None = None
    description: str | None = None
    prior: bool = False


class History(BaseModel):
    """A session's answers in round order (a slot 0–3, or ``"same"``), and the answers an
    undo took back (round, answer)."""

    session_id: str
    algorithm: str
    image_class: int
    choices: list[int | Literal["same"]]
    undone: list[tuple[int, int | Literal["same"]]]
    finished: bool


class Info(BaseModel):
    """What the page needs to know about the generator behind the API."""

    classes: list[str]
    algorithms: list[str]
    resolution: int


@dataclass(frozen=True)
class Limits:
    """What one server holds in memory and how fast it takes new sessions.

    Attributes:
        live_sessions: searches kept in memory, least recently used evicted
            first (an evicted session rebuilds from the log when next asked for).
        sessions_per_client: new sessions one client address may start per window.
        sessions_total: new sessions all clients together may start per window.
        window_s: the sliding window, in seconds.
    """

    live_sessions: int = 32
    sessions_per_client: int = 20
    sessions_total: int = 200
    window_s: float = 60.0


@dataclass
class _Live:
    """A session's search, rebuilt from the log, and its open round as logged.

    ``latents`` are the open round's five latents (middle, then slots 0–3) as the
    log holds them, ``path`` the start and every pick as (round, latent).
    """

    search: FourChoiceSearch
    space: SearchSpace
    cls: int
    version: int
    first_step: float
    path: list[tuple[int, np.ndarray]]
    prior: bool = False
    shown_round: int = 0
    latents: np.ndarray | None = None       # [5, n]
    keys: list[str] = field(default_factory=list)
    pngs: dict[str, bytes] = field(default_factory=dict)
    difference: float | None = None
    description: str | None = None


class _StartLimiter:
    """Sliding-window counts of new sessions, per client address and in total."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._total: deque[float] = deque()
        self._clients: dict[str, deque[float]] = {}

    def admit(self, client: str) -> None:
        """Count a new session from ``client``, or raise 429 naming the limit and the wait."""
        limits, now = self.limits, time.monotonic()
        with self._lock:
            for times in (self._total, self._clients.get(client, ())):
                while times and times[0] <= now - limits.window_s:
                    times.popleft()
            mine = self._clients.setdefault(client, deque())
            for times, most, who in ((mine, limits.sessions_per_client,
                                      f"this client ({client})"),
                                     (self._total, limits.sessions_total, "the server")):
                if len(times) >= most:
                    wait = max(1, math.ceil(times[0] + limits.window_s - now))
                    raise HTTPException(
                        429, f"{who} started {len(times)} new sessions in the last "
                             f"{limits.window_s:g} s, the most allowed; continue a session "
                             f"you have, or start one in {wait} s",
                        headers={"Retry-After": str(wait)})
            mine.append(now)
            self._total.append(now)
            if len(self._clients) > 2 * limits.sessions_total:   # forget idle clients
                self._clients = {c: t for c, t in self._clients.items()
                                 if t and t[-1] > now - limits.window_s}


class _Sessions:
    """The live searches: an LRU cache over the log, and a lock per session.

    The locks are striped (a fixed set, chosen by the session id's hash), so
    they take no memory per session, and different sessions mostly render in
    parallel.
    """

    STRIPES = 64

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.live: OrderedDict[str, _Live] = OrderedDict()
        self._lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(self.STRIPES)]

    def lock(self, session_id: str) -> threading.Lock:
        return self._stripes[hash(session_id) % self.STRIPES]

    def get(self, session_id: str) -> _Live | None:
        with self._lock:
            entry = self.live.get(session_id)
            if entry is not None:
                self.live.move_to_end(session_id)
            return entry

    def put(self, session_id: str, entry: _Live) -> None:
        with self._lock:
            self.live[session_id] = entry
            self.live.move_to_end(session_id)
            while len(self.live) > self.capacity:
                self.live.popitem(last=False)

    def drop(self, session_id: str) -> None:
        with self._lock:
            self.live.pop(session_id, None)


def _preference_prior(origin: np.ndarray, basis: np.ndarray,
                      head: PriorStart | None = None) -> dict:
    """PreferenceSearch's settings for people: the prior that the target is a typical latent,
    or the crowd's prior ``head`` (``pirtune.webapp.prior``).

    The person wants an image the generator draws, z* ~ N(0, I), so in the
    session's coordinates (z = origin + c·basis) the target is c* ~ N(−basis·origin,
    I): the prior is centred there with SD 1, and the first image shown is its
    centre. The first candidates move each of the two asked coordinates by
    ``FIRST_MOVE_SD`` prior SDs (the step scale that gives it in k directions, where
    the expected distance is √k): further out the shipped generator draws mostly
    black images, while for the quadrant a pick reveals the step does not matter.
    With ``head`` the prior is its centre and per-coordinate SDs instead.
    """
    k = len(basis)
    centre, sd = ((-basis @ origin).tolist(), 1.0) if head is None else (
        head.centre.tolist(), head.sd.tolist())
    return {"start": centre, "prior_sd": sd,
            "step_scale": FIRST_MOVE_SD * math.sqrt(2 / k), "min_step": MIN_STEP}


def _visible(speeds: Speeds, start: np.ndarray, floor: float = FLOOR) -> dict:
    """A session's visible metric settings: a step of the schedule shows at the start what it
    showed in latent units there on average (``Visible.at``), down to ``floor``; the search is
    stalled below ``MIN_VISIBLE``."""
    per_unit = Visible.at(speeds, start).per_unit
    return {"per_unit": per_unit, "floor": floor, "min_step": MIN_VISIBLE / per_unit}


def _search(settings: dict, speeds: Speeds | None = None) -> FourChoiceSearch:
    """The session's search, from its stored settings (the same settings, the same search);
    ``speeds`` is the session's visible metric, where its settings ask for one."""
    dim = len(settings["basis"])
    min_step = settings.get("min_step", 1e-6)   # logs from before stalled searches
    visible = None
    if "visible" in settings and speeds is not None:   # logs from before visible steps
        stored = settings["visible"]
        visible = Visible(speeds, stored["per_unit"], stored["floor"])
        min_step = stored["min_step"]
    if settings["algorithm"] == "preference":
        prior = settings.get("preference", {})  # logs from before the prior was stored
        return PreferenceSearch(np.array(prior.get("start", np.zeros(dim))),
                                prior_sd=np.array(prior.get("prior_sd", np.sqrt(2))),
                                step_scale=prior.get("step_scale", 2.0),
                                min_step=min_step if visible else prior.get("min_step", min_step),
                                visible=visible, pick_centre=prior.get("pick_centre", False))
    start = settings.get("axis", {})   # only sessions started from a crowd's prior store it
    return ALGORITHMS[settings["algorithm"]](np.array(start.get("start", np.zeros(dim))),
                                             seed=settings["seed"], min_step=min_step,
                                             visible=visible)


def _png(image: torch.Tensor, scale: int = 1, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes of ``image`` ([3, R, R] in [0, 1]), upscaled ``scale`` times, with ``text``."""
    pixels = (image * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    picture = PILImage.fromarray(pixels)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 PILImage.Resampling.NEAREST)
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    picture.save(buffer, format="png", pnginfo=info)
    return buffer.getvalue()


def _json_safe(value):
    """``value`` with every float JSON cannot hold (NaN, ±Infinity, 1e400 read as inf)
    as its text, so a refusal that echoes the input is itself valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _one_line(errors: list[dict]) -> str:
    """Pydantic's errors as one line: the field, what it should be, and what it was."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error["loc"]
                         if part not in ("body", "path", "query")) or "body"
        got = "" if error["type"] == "missing" else f" (got {error.get('input')!r:.60})"
        parts.append(f"{where}: {error['msg']}{got}")
    return "; ".join(parts)


def create_app(generator: nn.Module, log: InteractionLog,
               class_names: list[str] | None = None, limits: Limits = Limits(),
               generator_sha256: str | None = None,
               prior: CrowdPrior | None = None, floor: float = FLOOR) -> FastAPI:
    """The API and page over ``generator`` (in eval mode) with sessions kept in ``log``.

    New sessions step by what the eye sees (``pirtune.search.visible``): their
    candidates differ from the candidates' centre by the search's schedule in
    /255, and the two most alike by at least ``floor``.

    ``class_names`` label the generator's classes on the page and in
    descriptions (default "class 0", "class 1", …). ``generator_sha256``, the
    checksum of the bundle ``generator`` was loaded from, is recorded with
    every new session, so its images can be rendered again by the same
    generator (``pirtune.webapp.export``). With ``prior`` (earlier people's
    choice model, ``pirtune.webapp.prior``) every new session's search starts
    from what they picked; its start and spread go into the session's settings
    and the prior's checksum and name into its row of the log.
    ``app.state.live`` is the cache of live searches (at most
    ``limits.live_sessions``).
    """
    names = class_names or [f"class {c}" for c in range(generator.num_classes)]
    if len(names) != generator.num_classes:
        raise ValueError(f"{len(names)} class names for {generator.num_classes} classes")
    # No /docs or /redoc: Swagger UI would load from a CDN. The schema is at /openapi.json.
    app = FastAPI(title="pirtune four-choice search", max_body_size=MAX_BODY_BYTES,
                  docs_url=None, redoc_url=None)
    sessions = _Sessions(limits.live_sessions)
    starts = _StartLimiter(limits)
    app.state.live = sessions.live

    # One PCA at start-up, every session's k from it.
    directions = functools.cache(PrincipalDirections(generator).directions)
    # Image URLs name their content: the generator's weights, the class and the latent.
    weights = hashlib.sha256()
    for tensor in generator.state_dict().values():
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())

    def key(latent: np.ndarray, cls: int) -> str:
        digest = weights.copy()
        digest.update(int(cls).to_bytes(8, "little", signed=True))
        digest.update(np.asarray(latent, dtype=np.float64).tobytes())
        return digest.hexdigest()[:20]

    def url(session_id: str, latent: np.ndarray, cls: int) -> str:
        return f"/api/sessions/{session_id}/images/{key(latent, cls)}.png"

    def status(session_id: str) -> Status:
        """The session's status in the log; 404 if there is none."""
        try:
            return log.status(session_id)
        except UnknownSessionError as err:
            raise HTTPException(404, str(err)) from err

    def stored(session_id: str) -> dict:
        """The session's row in the log; 404 if there is none."""
        try:
            return log.session(session_id)
        except UnknownSessionError as err:
            raise HTTPException(404, str(err)) from err

    def build(session_id: str, version: int) -> _Live:
        """The session's search replayed from the log: each logged proposal answered by its
        pick (rounds logged before proposals were kept are proposed afresh)."""
        info = log.session(session_id)
        settings = info["settings"]
        space = SearchSpace(np.array(settings["origin"]), np.array(settings["basis"]))
        search = _search(settings, PixelMetric(generator, space, info["class"]))
        rounds = log.rounds(session_id)
        answers = log.answers(session_id)
        first = rounds.get(1)
        first_step = float(np.max(first.proposal["steps"]) if first and first.proposal
                           else search.propose().steps.max())
        start = (np.array(first.current) if first and first.current is not None
                 else space.to_latent(search.current))
        path = [(0, start)]
        for round_, answer in enumerate(answers, start=1):
            logged = rounds.get(round_)
            if logged.proposal is not None:
                search.resume(Proposal.from_json(logged.proposal))
            else:
                search.propose()
            search.choose(answer)
            if not answer.is_same:   # answered rounds are logged; a "same" picks no image
                path.append((round_, np.array(logged.latents[answer.index])))
        open_round = rounds.get(len(answers) + 1)
        if open_round is not None and open_round.proposal is not None:
            search.resume(Proposal.from_json(open_round.proposal))
        return _Live(search, space, info["class"], version, first_step, path,
                     prior=info["prior"] is not None)

    def live(session_id: str) -> tuple[_Live, Status]:
        """The session's cached search if it matches the log, else one rebuilt from it
        (the caller holds the session's lock)."""
        now = status(session_id)
        entry = sessions.get(session_id)
        if entry is None or entry.version != now.version or entry.search.rounds != now.answered:
            entry = build(session_id, now.version)
            sessions.put(session_id, entry)
        return entry, now

    def shown(session_id: str, entry: _Live, version: int) -> _Live:
        """``entry`` with its open round logged (once) and its five latents as logged."""
        proposal = entry.search.propose()
        if entry.shown_round != proposal.round:
            current = entry.path[-1][1]   # the last pick (the start image before any)
            try:
                logged: Round = log.record_shown(
                    session_id, proposal.round, entry.space.to_latent(proposal.points).tolist(),
                    entry.cls, current=current.tolist(), proposal=proposal.to_json(),
                    version=version)
            except ConflictError as err:   # another server changed the session meanwhile
                sessions.drop(session_id)
                raise HTTPException(409, str(err)) from err
            middle = logged.current if logged.current is not None else current
            entry.latents = np.vstack([middle, logged.latents])
            entry.keys = [key(latent, entry.cls) for latent in entry.latents]
            entry.pngs, entry.difference = {}, None
            entry.shown_round = proposal.round
        return entry

    def rendered(entry: _Live) -> dict[str, bytes]:
        """The open round's five PNGs by key, rendered in one batch, and how much the
        candidates differ from the middle image in them."""
        if not entry.pngs:
            z = torch.as_tensor(entry.latents, dtype=torch.float32)
            with torch.inference_mode():
                images = render(generator, z, torch.full((len(z),), entry.cls))
            entry.pngs = {k: _png(image) for k, image in zip(entry.keys, images, strict=True)}
            entry.difference = float(pixel_difference(images[1:], images[:1]).mean())
        return entry.pngs

    def single(latent: np.ndarray, cls: int) -> torch.Tensor:
        with torch.inference_mode():
            return render(generator, torch.as_tensor(latent[None], dtype=torch.float32),
                          torch.tensor([cls]))[0]

    def state(session_id: str) -> State:
        """The session's state (the caller holds its lock)."""
        entry, now = live(session_id)
        entry = shown(session_id, entry, now.version)
        proposal = entry.search.propose()
        rendered(entry)
        final = entry.path[-1][1]
        if now.finished and entry.description is None:
            entry.description = describe(single(final, entry.cls), names[entry.cls],
                                         len(entry.path) - 1)
        urls = [f"/api/sessions/{session_id}/images/{k}.png" for k in entry.keys]
        return State(
            session_id=session_id, round=proposal.round, current=urls[0], candidates=urls[1:],
            path=[PathImage(round=r, url=url(session_id, latent, entry.cls))
                  for r, latent in entry.path],
            difference=round(entry.difference, 1),
            step=round(float(proposal.steps.max()) / entry.first_step, 4),
            stalled=bool(proposal.stalled), finished=now.finished,
            final=f"/api/sessions/{session_id}/final.png" if now.finished else None,
            description=entry.description if now.finished else None, prior=entry.prior)

    def refuse_if_finished(session_id: str, now: Status) -> None:
        if now.finished:
            raise HTTPException(409, f"session {session_id} is finished; start a new one")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = _json_safe(err.errors())
        return JSONResponse(status_code=422, content={
            "detail": _one_line(errors), "errors": jsonable_encoder(errors)})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.get("/api/info", response_model=Info)
    def info() -> Info:
        return Info(classes=names, algorithms=list(ALGORITHMS),
                    resolution=generator.resolution)

    @app.post("/api/sessions", response_model=State)
    def start(request: NewSession, http: Request) -> State:
        if request.image_class >= generator.num_classes:
            raise HTTPException(422, f"image_class {request.image_class} does not exist; "
                                     f"choose 0..{generator.num_classes - 1}")
        if request.k > generator.latent_dim:
            raise HTTPException(422, f"k {request.k} is more directions than the latent has; "
                                     f"choose 3..{generator.latent_dim}")
        starts.admit(http.client.host if http.client else "unknown")
        # The bundle's own draw: N(0, I), or a selector's pick (tune.method=select).
        origin = draw_latents(generator, torch.tensor([request.image_class]),
                              torch.Generator().manual_seed(request.seed))[0].double().numpy()
        basis = (directions(request.k) if request.space == "ganspace"
                 else np.eye(generator.latent_dim))
        space = SearchSpace(origin, basis)
        head = None if prior is None else prior.start(origin, basis, request.image_class)
        preference = _preference_prior(origin, basis, head)
        axis_start = head.centre if head is not None else np.zeros(len(basis))
        start = (np.array(preference["start"]) if request.algorithm == "preference"
                 else axis_start)
        settings = {"algorithm": request.algorithm, "seed": request.seed,
                    "origin": origin.tolist(), "basis": basis.tolist(),
                    "preference": preference, "min_step": MIN_STEP,
                    "visible": _visible(PixelMetric(generator, space, request.image_class),
                                        start, floor)}
        if head is not None:
            settings["axis"] = {"start": head.centre.tolist()}
        session_id = log.create_session(
            request.algorithm, request.image_class, settings, generator_sha256,
            None if prior is None else Prior(prior.sha256, prior.name))
        with sessions.lock(session_id):
            return state(session_id)

    @app.get("/api/sessions/{session_id}", response_model=State)
    def get(session_id: str) -> State:
        with sessions.lock(session_id):
            return state(session_id)

    @app.post("/api/sessions/{session_id}/choices", response_model=State)
    def choose(session_id: str, choice: Choice) -> State:
        with sessions.lock(session_id):
            entry, now = live(session_id)
            refuse_if_finished(session_id, now)
            entry = shown(session_id, entry, now.version)
            answer = choice.feedback
            try:
                new = log.record_choice(session_id, choice.round, answer)
            except ConflictError as err:
                raise HTTPException(409, str(err)) from err
            if new:
                entry.search.choose(answer)
                if not answer.is_same:   # "same" keeps the middle image: nothing was picked
                    entry.path.append((choice.round, entry.latents[1 + answer.index]))
            return state(session_id)

    @app.post("/api/sessions/{session_id}/undo", response_model=State)
    def undo(session_id: str) -> State:
        with sessions.lock(session_id):
            refuse_if_finished(session_id, status(session_id))
            log.undo(session_id)
            sessions.drop(session_id)   # rebuilt from the log's remaining rounds
            return state(session_id)

    @app.post("/api/sessions/{session_id}/finish", response_model=State)
    def finish(session_id: str) -> State:
        """Finish the session with the last picked image (the start image if none)."""
        with sessions.lock(session_id):
            status(session_id)
            log.finish(session_id)
            return state(session_id)

    @app.get("/api/sessions/{session_id}/history", response_model=History)
    def history(session_id: str) -> History:
        info = stored(session_id)
        return History(session_id=session_id, algorithm=info["algorithm"],
                       image_class=info["class"], choices=log.choices(session_id),
                       undone=log.undone(session_id), finished=info["finished"] is not None)

    @app.get("/api/sessions/{session_id}/images/{name}.png")
    def image(session_id: str,
              name: Annotated[str, Path(pattern="^[0-9a-f]{20}$",
                                        description="the image's key, from a State")]
              ) -> Response:
        with sessions.lock(session_id):
            entry, now = live(session_id)
            entry = shown(session_id, entry, now.version)
            if name in entry.keys:
                png = rendered(entry)[name]
            else:
                latent = next((latent for _, latent in entry.path
                               if key(latent, entry.cls) == name), None)
                if latent is None:
                    raise HTTPException(404, f"image {name} is not one of session "
                                             f"{session_id}'s images on show or on its path")
                png = _png(single(latent, entry.cls))
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=31536000, immutable"})

    @app.get("/api/sessions/{session_id}/final.png")
    def final(session_id: str,
              scale: Annotated[int, Query(ge=1, le=MAX_SCALE,
                                          description="upscaling, nearest pixel")] = 1
              ) -> Response:
        """The final image (the last pick), with its latent and class in the PNG's text."""
        with sessions.lock(session_id):
            entry, now = live(session_id)
            if not now.finished:
                raise HTTPException(409, f"session {session_id} is not finished; its final "
                                         "image is the last pick when the person finishes")
            round_, latent = entry.path[-1]
            text = {"Software": "pirtune", "pirtune:latent": json.dumps(latent.tolist()),
                    "pirtune:class": str(entry.cls), "pirtune:class_name": names[entry.cls],
                    "pirtune:session": session_id, "pirtune:round": str(round_)}
            png = _png(single(latent, entry.cls), scale, text)
        return Response(png, media_type="image/png", headers={
            "Cache-Control": "private, max-age=31536000, immutable",
            "Content-Disposition": f'attachment; filename="pirtune-{session_id[:8]}'
                                   f'{"" if scale == 1 else f"-x{scale}"}.png"'})

    return app
