"""``pirtune-crowd``: simulated people using a running ``pirtune-serve`` over real HTTP.

    pirtune-serve --port 8000 --db runs/crowd/interactions.db --sessions-per-client 1000 &
    pirtune-crowd --url http://127.0.0.1:8000 --people 50 --rounds 20 \\
        --objective color_blue --temperature 0.05
    pirtune-train data=interactions data.path=runs/crowd/interactions.db \\
        objective=color_blue data.hidden_objective=true

Each person starts a session (a class drawn at random), and in every round
downloads the four candidates' PNGs the page would show, scores them with
their hidden objective (any ``objective=`` config, composed by Hydra with
``--set`` overrides such as ``objective.k=20``) and picks:

* exactly the best (``--temperature 0``, ``--random-share 0``);
* by Bradley–Terry (Luce) choice, P(pick i) ∝ exp(PIRᵢ / T), with ``--temperature T``
  in PIR units;
* uniformly at random in a share ``--random-share`` of rounds (with either).

After a pick, with probability ``--undo-share``, they take it back and pick
again among the new candidates. After ``--rounds`` picks they finish. The
server logs everything, as it does for people; the loop then tunes on it and
the hidden objective scores the result (``data.hidden_objective=true``).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
import numpy as np
import torch
from PIL import Image

from pirtune.errors import UsageError


@dataclass(frozen=True)
class Noise:
    """How a simulated person turns four scores into a pick.

    Attributes:
        temperature: Bradley–Terry temperature in PIR units; 0 picks the best.
        random_share: the share of picks made uniformly at random.
    """

    temperature: float = 0.0
    random_share: float = 0.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UsageError(f"--temperature {self.temperature} must be at least 0 (0: exact "
                             "picks)")
        if not 0 <= self.random_share <= 1:
            raise UsageError(f"--random-share {self.random_share} must be between 0 and 1")

    def pick(self, scores: np.ndarray, rng: np.random.Generator) -> int:
        """The chosen index among ``scores`` [K] (higher is better)."""
        if self.random_share and rng.random() < self.random_share:
            return int(rng.integers(len(scores)))
        if not self.temperature:
            return int(np.argmax(scores))
        weights = np.exp((scores - scores.max()) / self.temperature)
        return int(rng.choice(len(scores), p=weights / weights.sum()))


@dataclass(frozen=True)
class CrowdResult:
    """What the crowd did: sessions started, picks kept, picks undone."""

    sessions: list[str]
    picks: int
    undone: int


def png_to_tensor(data: bytes) -> torch.Tensor:
    """PNG bytes → float [3, H, W] in [0, 1]."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(pixels / 255.0).permute(2, 0, 1)


def compose_objective(name: str, overrides: Sequence[str] = ()) -> torch.nn.Module:
    """The objective ``objective=<name>`` composes to (with ``overrides``), built."""
    from hydra import compose, initialize_config_dir

    from pirtune.compose import check_group_overrides, register_resolvers
    from pirtune.objectives import build_objective
    from pirtune.paths import CONFIG_DIR

    check_group_overrides([f"objective={name}"])
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"objective={name}", *overrides])
    return build_objective(cfg.objective).eval()


def _request(client: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response:
    """One request; a 429 waits its Retry-After and tries again, any other error raises."""
    while True:
        response = client.request(method, url, **kwargs)
        if response.status_code != 429:
            break
        time.sleep(float(response.headers.get("Retry-After", "1")))
    if response.is_error:
        raise UsageError(f"{method} {url} answered {response.status_code}: "
                         f"{response.json().get('detail', response.text)}")
    return response


def run_person(client: httpx.Client, score: Callable[[torch.Tensor], torch.Tensor],
               noise: Noise, rounds: int, undo_share: float, seed: int, classes: int,
               algorithm: str = "preference") -> tuple[str, int, int]:
    """One person's session: ``rounds`` picks (and undos), then finish.

    Returns the session id, the picks kept and the picks undone.
    """
    rng = np.random.default_rng(seed)
    state = _request(client, "POST", "/api/sessions", json={
        "algorithm": algorithm, "image_class": int(rng.integers(classes)),
        "seed": int(seed % 2**31)}).json()
    session, undone = state["session_id"], 0
    while state["round"] <= rounds:
        images = torch.stack([png_to_tensor(_request(client, "GET", url).content)
                              for url in state["candidates"]])          # [4, 3, R, R]
        with torch.no_grad():
            scores = score(images).double().numpy()
        choice = {"round": state["round"], "index": noise.pick(scores, rng)}
        state = _request(client, "POST", f"/api/sessions/{session}/choices", json=choice).json()
        if undo_share and rng.random() < undo_share:
            state = _request(client, "POST", f"/api/sessions/{session}/undo").json()
            undone += 1
    _request(client, "POST", f"/api/sessions/{session}/finish")
    return session, rounds, undone


def run_crowd(url: str, score: Callable[[torch.Tensor], torch.Tensor], people: int,
              rounds: int, noise: Noise = Noise(), undo_share: float = 0.0, seed: int = 0,
              algorithm: str = "preference", timeout: float = 60.0) -> CrowdResult:
    """``people`` simulated people, one after another, against the server at ``url``."""
    if people < 1 or rounds < 1:
        raise UsageError(f"--people {people} and --rounds {rounds} must be at least 1")
    if not 0 <= undo_share < 1:
        raise UsageError(f"--undo-share {undo_share} must be in [0, 1)")
    sessions, picks, undone = [], 0, 0
    with httpx.Client(base_url=url, timeout=timeout) as client:
        try:
            classes = len(_request(client, "GET", "/api/info").json()["classes"])
        except httpx.TransportError as err:
            raise UsageError(f"no pirtune-serve answers at {url} ({err}); start one "
                             "(pirtune-serve --port <port>) and give its --url") from err
        for person in range(people):
            session, kept, back = run_person(client, score, noise, rounds, undo_share,
                                             seed * 100_003 + person, classes, algorithm)
            sessions.append(session)
            picks += kept
            undone += back
    return CrowdResult(sessions, picks, undone)


def main(argv: list[str] | None = None) -> None:
    """Console script ``pirtune-crowd``."""
    parser = argparse.ArgumentParser(
        prog="pirtune-crowd", description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000",
                        help="the running pirtune-serve")
    parser.add_argument("--people", type=int, default=10, help="simulated people")
    parser.add_argument("--rounds", type=int, default=20, help="picks each person keeps")
    parser.add_argument("--objective", default="color_blue",
                        help="the people's hidden objective (an objective= config option)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hydra override of the objective, e.g. objective.k=20")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="Bradley–Terry temperature in PIR units (0: exact picks)")
    parser.add_argument("--random-share", type=float, default=0.0,
                        help="share of picks made at random")
    parser.add_argument("--undo-share", type=float, default=0.0,
                        help="chance of undoing a pick (and picking again)")
    parser.add_argument("--algorithm", default="preference",
                        choices=["preference", "axis", "random"], help="the sessions' search")
    parser.add_argument("--seed", type=int, default=0, help="seeds the people")
    args = parser.parse_args(argv)
    try:
        for override in args.set:
            if not override.startswith("objective."):
                raise UsageError(f"--set {override}: only objective.<key>=<value> overrides "
                                 "apply; e.g. --set objective.k=20")
        noise = Noise(args.temperature, args.random_share)
        objective = compose_objective(args.objective, args.set)
        result = run_crowd(args.url, objective, args.people, args.rounds, noise,
                           args.undo_share, args.seed, args.algorithm)
    except UsageError as err:
        print(f"pirtune-crowd: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"pirtune-crowd: {len(result.sessions)} people made {result.picks} picks "
          f"({result.undone} undone and made again) with hidden objective {args.objective} "
          f"at {args.url}")


if __name__ == "__main__":
    main()
