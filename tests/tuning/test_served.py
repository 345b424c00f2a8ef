"""Tuned results served back: ``pirtune-serve --checkpoint`` on a latent and a select bundle."""

from __future__ import annotations

import io

import httpx
import numpy as np
import torch
from PIL import Image

from pirtune.models.bundle import draw_latents, load_bundle, load_sampler, render
from pirtune.webapp import InteractionLog
from pirtune.webapp.serve import launch


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def _as_png_pixels(image: torch.Tensor) -> np.ndarray:
    return (image * 255 + 0.5).clamp(0, 255).floor().permute(1, 2, 0).numpy()


def test_serve_draws_a_latent_result_through_its_prior_and_searches_in_eps(
        tmp_path, tune_copy, tiny_generator):
    bundle = tune_copy("tune=latent", "tune.method.lr=0.5", "tune.eval_every=0")
    sampler, _ = load_sampler(bundle)
    generator, _, _ = load_bundle(tiny_generator)
    db = tmp_path / "log.db"
    server, base = launch(db, options=["--checkpoint", str(bundle), "--threads", "1"])
    try:
        state = httpx.post(f"{base}/api/sessions", json={"algorithm": "preference", "k": 4,
                                                         "image_class": 1, "seed": 5},
                           timeout=60).json()
        session = state["session_id"]
        state = httpx.post(f"{base}/api/sessions/{session}/choices",
                           json={"round": 1, "index": 2}, timeout=60).json()
        shown = httpx.get(f"{base}{state['candidates'][0]}", timeout=60).content
    finally:
        server.kill()
        server.wait()
    log = InteractionLog(db)
    eps = torch.tensor(log.rounds(session)[2].latents[0], dtype=torch.float32)[None]
    label = torch.tensor([1])
    # The logged latent is ε: the page shows G(μ_c + ε), not G(ε).
    through_prior = _as_png_pixels(render(sampler, eps, label)[0])
    assert np.abs(_pixels(shown) - through_prior).max() <= 1
    z = eps + sampler.prior.mu[label]
    torch.testing.assert_close(render(sampler, eps, label), render(generator, z, label))
    assert not np.allclose(_as_png_pixels(render(generator, eps, label)[0]), through_prior,
                           atol=1)
    # The session records the bundle it was served by.
    assert log.session(session)["generator"]


def test_serve_starts_each_session_from_a_select_draw(tmp_path, tune_copy):
    bundle = tune_copy("tune=select", "tune.method.calibration=40",
                       "tune.method.acceptance=0.2")
    sampler, _ = load_sampler(bundle)
    db = tmp_path / "log.db"
    server, base = launch(db, options=["--checkpoint", str(bundle), "--threads", "1"])
    try:
        sessions = [httpx.post(f"{base}/api/sessions", json={"k": 4, "image_class": c,
                                                             "seed": seed},
                               timeout=60).json()["session_id"]
                    for seed, c in ((0, 0), (1, 1), (2, 1))]
    finally:
        server.kill()
        server.wait()
    log = InteractionLog(db)
    for session, (seed, c) in zip(sessions, ((0, 0), (1, 1), (2, 1)), strict=True):
        origin = torch.tensor(log.session(session)["settings"]["origin"], dtype=torch.float64)
        # The selector's own draw for this class and seed …
        expected = draw_latents(sampler, torch.tensor([c]), torch.Generator().manual_seed(seed))
        torch.testing.assert_close(origin, expected[0].double(), rtol=0, atol=1e-7)
        # … which its estimator accepts.
        score = sampler.selector.scores(sampler.generator, origin[None].float(),
                                        torch.tensor([c]))
        assert float(score) >= float(sampler.selector.thresholds[c])
