"""The paper's demonstration (its Figures 1–3): a simulated person turns one image into another.

A person starts from a coast drawn by the shipped generator and wants a given
mountain scene. The class is fixed per session, so they first switch the
class to "mountain" (the start latent drawn as a mountain), then search the
8 GANSpace directions through the start latent (``principal_directions``) by
picking the best of four, until the image is within R = 0.05·√8 of the target
in those coordinates. Each row of the strip is one algorithm: the start, then
the chosen images at evenly spaced rounds, then the target.

    python scripts/search_demo.py      # docs/search_demo.png and docs/bench/search_demo.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image

from pirtune.models.bundle import load_sampler, render
from pirtune.paths import SHIPPED_GENERATOR
from pirtune.search import (
    AxisSearch,
    PreferenceSearch,
    SearchSpace,
    SimulatedPerson,
    principal_directions,
    satisfaction_radius,
    simulate,
)

FRAMES = 10  # chosen images shown per row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default=str(SHIPPED_GENERATOR))
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "search_demo.png")
    parser.add_argument("--record", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "bench"
                        / "search_demo.json", help="the picks each search took (JSON)")
    parser.add_argument("--k", type=int, default=8, help="GANSpace directions searched")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    generator, _ = load_sampler(args.generator)
    rng = np.random.default_rng(args.seed)
    start_latent = rng.standard_normal(generator.latent_dim)
    space = SearchSpace.subspace(start_latent, principal_directions(generator, args.k))
    target = rng.standard_normal(args.k) * np.sqrt(2)  # as far as two random latents
    start_class, target_class = 0, 1                    # coast → mountain
    radius = satisfaction_radius(args.k)

    def draw(coords: np.ndarray, label: int) -> torch.Tensor:
        z = torch.as_tensor(space.to_latent(np.atleast_2d(coords)), dtype=torch.float32)
        return render(generator, z, torch.full((len(z),), label))

    rows, record = [], {"generator": Path(args.generator).name, "k": args.k,
                        "seed": args.seed, "radius": radius, "rounds_to_target": {}}
    for name, search in (("axis", AxisSearch(np.zeros(args.k), seed=args.seed)),
                         ("preference", PreferenceSearch(np.zeros(args.k)))):
        session = simulate(search, SimulatedPerson(target, seed=args.seed), radius)
        last = len(session.path) - 1
        picks = np.unique(np.linspace(1, last, FRAMES).round().astype(int))
        frames = [draw(np.zeros(args.k), start_class), draw(session.path[picks], target_class),
                  draw(target, target_class)]
        row = torch.cat(frames)
        pad = FRAMES + 2 - len(row)  # short sessions: blank frames keep the rows aligned
        rows.append(torch.cat([row, torch.ones(pad, *row.shape[1:])]) if pad > 0 else row)
        record["rounds_to_target"][name] = session.rounds_to_target
        print(f"{name}: within R after {session.rounds_to_target} rounds; frames at rounds "
              f"{picks.tolist()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip = torch.nn.functional.interpolate(torch.cat(rows), scale_factor=3, mode="nearest")
    save_image(strip, args.out, nrow=FRAMES + 2, padding=4, pad_value=1.0)
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out} and {args.record}")


if __name__ == "__main__":
    main()
