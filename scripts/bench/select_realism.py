"""Best-of-n with a realism filter: the effect, realism and tilted distance over a grid.

    python scripts/bench/select_realism.py runs/crowd-bench-v2/runs/crowd-s0-2000/estimator.pt

``tune=select`` keeps the draws the estimator rates highest; ``tune.method.realism``
first rejects the share of draws the generator's own discriminator rates least
real. This scores one pool of the shipped generator's draws once (the estimate,
the discriminator's source value, the true objective, landscape-encoder features)
and then applies every (realism, acceptance) of the grid to it, as the selector
would: Cohen's d of the true objective (1,000 kept against 1,000 of all), precision against real
scenes, and FID and precision against the real scenes tilted by the objective to
the kept set's gain (``pirtune.metrics.tilted``), on 1,000 kept draws each (so FID's
small-sample bias is the same in every row). The "oracle" row keeps the draws the
true objective itself rates highest: what perfect knowledge of the objective buys.
Writes ``<out>.md`` and ``<out>.csv`` (by default docs/bench/select_realism).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import mannwhitneyu  # noqa: E402

from pirtune.estimator.files import read_estimator_file  # noqa: E402
from pirtune.metrics import feature_network  # noqa: E402
from pirtune.metrics.encoder_training import scenes  # noqa: E402
from pirtune.metrics.quality import extract, fid_from_features, precision_recall  # noqa: E402
from pirtune.metrics.tilted import tilted_quality  # noqa: E402
from pirtune.models.bundle import estimator_from_saved, load_bundle, render  # noqa: E402
from pirtune.objectives import ColourObjective  # noqa: E402
from pirtune.paths import SHIPPED_GENERATOR  # noqa: E402
from pirtune.stats import cohens_d  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
GRID = [(0.0, 0.3), (0.0, 0.2), (0.1, 0.3), (0.1, 0.2), (0.1, 0.15), (0.2, 0.3), (0.2, 0.15),
        (0.2, 0.1), (0.2, 0.07), (0.3, 0.05)]
REAL_SEED = 10_000_000   # the quality bench's first real set
SCORED = 1000            # kept draws each row's FIDs and precisions are computed on


def batched(network, images: torch.Tensor, *extra: torch.Tensor, size: int = 256):
    with torch.no_grad():
        return torch.cat([network(images[i:i + size], *(e[i:i + size] for e in extra))
                          for i in range(0, len(images), size)])


def precision_members(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> np.ndarray:
    """Which generated features [M] lie inside some real sample's k-NN ball: the test
    whose mean is precision (``pirtune.metrics.quality.precision_recall``)."""
    radii = torch.cdist(real, real).kthvalue(k + 1, dim=1).values
    return torch.cat([(torch.cdist(fake[i:i + 4096], real) <= radii[None]).any(dim=1)
                      for i in range(0, len(fake), 4096)]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("estimator", type=Path, help="an estimator.pt to rank draws by")
    parser.add_argument("--colours", nargs="+", default=["blue"],
                        help="the true objective's colours (ColourObjective)")
    parser.add_argument("--draws", type=int, default=16000)
    parser.add_argument("--real", type=int, default=6000, help="the real pool tilted")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "select_realism")
    args = parser.parse_args()
    start = time.perf_counter()

    generator, discriminator, _ = load_bundle(SHIPPED_GENERATOR)
    generator.eval(), discriminator.eval()
    labels = torch.arange(args.draws) % generator.num_classes
    z = torch.randn(args.draws, generator.latent_dim, generator=torch.Generator().manual_seed(5))
    images = render(generator, z, labels)
    critic = batched(lambda x, c: discriminator(x * 2 - 1, c)[0], images, labels).numpy()
    objective = ColourObjective(args.colours).eval()
    true = batched(objective, images).numpy()
    estimator = estimator_from_saved(read_estimator_file(args.estimator)).eval()
    estimate = batched(estimator, images).numpy()
    network = feature_network()
    real, _ = scenes(REAL_SEED, args.real)
    real_features, fake_features = extract(network, real), extract(network, images)
    real_true = batched(objective, real)
    rng = np.random.default_rng(0)
    # d as the loop's evaluate computes it: two samples of the same size, untuned and kept.
    untuned = torch.as_tensor(rng.choice(args.draws, SCORED, replace=False))

    def row(name: str, realism: float | None, acceptance: float | None,
            keep: np.ndarray) -> dict:
        kept = np.flatnonzero(keep)
        scored = torch.as_tensor(rng.choice(kept, min(SCORED, len(kept)), replace=False))
        precision, _ = precision_recall(real_features[:2000], fake_features[scored])
        tilted = tilted_quality(real_features, real_true, fake_features[scored],
                                float(true[scored].mean()))
        return {"rule": name, "realism": realism, "acceptance": acceptance,
                "kept": len(kept), "cohens_d": cohens_d(true[untuned], true[scored]),
                "precision": precision,
                "fid": fid_from_features(real_features[:SCORED], fake_features[scored]),
                "tilted_fid": tilted.fid, "tilted_precision": tilted.precision}

    # How well the discriminator ranks realism: the AUC of its source value for the draws
    # inside the real scenes' k-NN balls (precision's test) against those outside.
    inside = precision_members(real_features[:2000], fake_features)
    auc = float(mannwhitneyu(critic[inside], critic[~inside]).statistic
                / (inside.sum() * (~inside).sum()))
    rows = [row("untuned", None, 1.0, np.ones(args.draws, bool)),
            row("oracle", None, 0.3, true >= np.quantile(true, 0.7))]
    for realism, acceptance in GRID:
        # The selector's rule on one pool: the critic's realism-quantile, then the top
        # `acceptance` share of all draws among the admitted ones.
        admitted = critic >= np.quantile(critic, realism)
        threshold = np.quantile(estimate[admitted], 1 - acceptance / (1 - realism))
        rows.append(row("select", realism, acceptance, admitted & (estimate >= threshold)))
        print(rows[-1])

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# Best-of-n with a realism filter (`{args.estimator}`)", "",
             f"{args.draws} draws of the shipped generator (`{SHIPPED_GENERATOR.name}`), ranked by "
             f"the estimator; true objective: colour {'+'.join(args.colours)}. Precision against "
             f"2,000 real scenes; FID and precision against {args.real} real scenes tilted by the "
             f"objective to each row's gain; each on {SCORED} kept draws. Realism: the share of "
             "draws the discriminator rejects first; acceptance: the share of all draws kept. "
             f"The discriminator ranks the draws inside the real scenes' k-NN balls above those "
             f"outside with AUC {auc:.3f} ({inside.mean():.3f} of all draws are inside). "
             f"Made by `python scripts/bench/select_realism.py {args.estimator}` on "
             f"{platform.machine()}, {os.cpu_count()} cores, in "
             f"{(time.perf_counter() - start) / 60:.1f} min.", "",
             "| rule | realism | acceptance | Cohen's d | precision | FID | FID tilted | "
             "precision tilted |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['rule']} | {'' if r['realism'] is None else r['realism']} | "
                     f"{r['acceptance']} | {r['cohens_d']:.2f} | {r['precision']:.3f} | "
                     f"{r['fid']:.1f} | {r['tilted_fid']:.1f} | {r['tilted_precision']:.3f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}.md and .csv")


if __name__ == "__main__":
    main()
