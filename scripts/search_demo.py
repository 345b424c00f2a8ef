"""The paper's demonstration (its Figures 1–3): a simulated person turns one image into another.

A person starts from a coast drawn by the shipped generator and wants a given
mountain scene. The class is fixed per session, so they first switch the
class to "mountain" (the start latent drawn as a mountain), then search the
8 GANSpace directions through the start latent (``principal_directions``) by
picking the best of four, until the image is within R = 0.05·√8 of the target
in those coordinates. Both searches step as the web app's do: by what the eye
sees (``pirtune.search.visible``, the app's floor of 6/255).

The picture: one row per algorithm, the start, then the chosen image at
rounds spread on a log scale (the early rounds change the image most, the late
ones least), then the target, set apart; each frame is labelled with its round
and its visible distance to the target (mean absolute 8-bit difference, /255).
Beside the strips, that distance at every round for both searches, with the
just-noticeable difference (4/255) the page assumes.

    python scripts/search_demo.py      # docs/search_demo.png and docs/bench/search_demo.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pirtune.models.bundle import load_sampler, render  # noqa: E402
from pirtune.paths import SHIPPED_GENERATOR  # noqa: E402
from pirtune.search import (  # noqa: E402
    AxisSearch,
    PixelMetric,
    PreferenceSearch,
    SearchSpace,
    SimulatedPerson,
    Visible,
    principal_directions,
    satisfaction_radius,
    simulate,
)
from pirtune.search.visible import pixel_difference  # noqa: E402
from pirtune.webapp.app import FLOOR, JND, MIN_VISIBLE  # noqa: E402

FRAMES = 8  # chosen images shown per row
REPO = Path(__file__).resolve().parents[1]


def frame_rounds(last: int, frames: int = FRAMES) -> list[int]:
    """Up to ``frames`` distinct rounds from 1 to ``last``, spread on a log scale."""
    if last < 1:
        return []
    rounds = np.unique(np.geomspace(1, last, frames).round().astype(int))
    return rounds.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default=str(SHIPPED_GENERATOR))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "search_demo.png")
    parser.add_argument("--record", type=Path, default=REPO / "docs" / "bench" / "search_demo.json",
                        help="the picks each search took and its visible distances (JSON)")
    parser.add_argument("--k", type=int, default=8, help="GANSpace directions searched")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    generator, _ = load_sampler(args.generator)
    generator.eval()
    rng = np.random.default_rng(args.seed)
    start_latent = rng.standard_normal(generator.latent_dim)
    space = SearchSpace.subspace(start_latent, principal_directions(generator, args.k))
    target = rng.standard_normal(args.k) * np.sqrt(2)  # as far as two random latents
    start_class, target_class = 0, 1                    # coast → mountain
    radius = satisfaction_radius(args.k)
    metric = PixelMetric(generator, space, target_class)

    def draw(coords: np.ndarray, label: int) -> torch.Tensor:
        z = torch.as_tensor(space.to_latent(np.atleast_2d(coords)), dtype=torch.float32)
        return render(generator, z, torch.full((len(z),), label))

    target_image = draw(target, target_class)
    start = np.zeros(args.k)
    per_unit = Visible.at(metric, start).per_unit
    visible = Visible(metric, per_unit, FLOOR)
    min_step = MIN_VISIBLE / per_unit
    searches = {"AxisSearch": AxisSearch(start.copy(), seed=args.seed, visible=visible,
                                         min_step=min_step),
                "PreferenceSearch": PreferenceSearch(start.copy(), visible=visible,
                                                     min_step=min_step)}
    record = {"generator": Path(args.generator).name, "k": args.k, "seed": args.seed,
              "radius": radius, "floor": FLOOR, "jnd": JND, "searches": {}}
    runs = {}
    for name, search in searches.items():
        session = simulate(search, SimulatedPerson(target, seed=args.seed), radius)
        images = draw(session.path, target_class)
        distance = pixel_difference(images, target_image).tolist()
        runs[name] = (session, images, distance)
        record["searches"][name] = {"rounds_to_target": session.rounds_to_target,
                                    "stalled": session.stalled,
                                    "visible_distance": [round(d, 2) for d in distance]}
        print(f"{name}: within R after {session.rounds_to_target} rounds; visible distance "
              f"{distance[0]:.1f} → {distance[-1]:.1f} /255")

    start_image = draw(start, start_class)[0]
    fig = plt.figure(figsize=(13.5, 4.2), layout="constrained")
    grid = fig.add_gridspec(2, FRAMES + 3, width_ratios=[1] * (FRAMES + 2) + [3.2])
    for row, (name, (session, images, distance)) in enumerate(runs.items()):
        frames = [(start_image, "start (coast)")]
        frames += [(images[r], f"round {r}\n{distance[r]:.0f}/255 off")
                   for r in frame_rounds(len(session.path) - 1)]
        for column in range(FRAMES + 2):
            ax = fig.add_subplot(grid[row, column])
            ax.set_axis_off()
            if column == FRAMES + 1:
                ax.imshow(target_image[0].permute(1, 2, 0).numpy())
                ax.set_title("target", fontsize=8, fontweight="bold")
                for spine in ax.spines.values():
                    spine.set_visible(True)
            elif column < len(frames):
                image, label = frames[column]
                ax.imshow(image.permute(1, 2, 0).numpy())
                ax.set_title(label, fontsize=7)
            if column == 0:
                ax.text(-0.12, 0.5, name, rotation=90, va="center", ha="right", fontsize=9,
                        transform=ax.transAxes)
    plot = fig.add_subplot(grid[:, FRAMES + 2])
    for name, (session, _, distance) in runs.items():
        reached = session.rounds_to_target
        plot.plot(range(len(distance)), distance,
                  label=f"{name} (within R at round {reached})")
    plot.axhline(JND, color="grey", ls=":", label=f"just-noticeable ({JND:.0f}/255)")
    top = max(max(distance) for _, _, distance in runs.values())
    plot.set(xlabel="round", ylabel="visible distance to the target (/255)",
             ylim=(0, 1.45 * top))   # headroom: the legend sits above the curves
    plot.legend(fontsize=7, loc="upper right")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out} and {args.record}")


if __name__ == "__main__":
    main()
