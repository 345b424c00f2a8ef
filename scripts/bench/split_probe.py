"""Can an estimator learn where a colour is? A probe on a split objective's PIR data.

    python scripts/bench/split_probe.py runs/frontier/base/cpu-color_green_red/pir_data

color_green_red (left green, right red) and its mirror, red_green, correlate at
about 0.985 on the shipped generator's samples: most of what either measures is
how much red and green an image has, not where. This trains small_cnn and
small_cnn_coord (the same with the pixel's position as two more input channels)
to regress the observed PIR on 80 % of the images and reports, on the rest, the
Spearman correlation of each one's estimate with the objective, and of the part
of its estimate the mirrored objective does not explain (the residual of a
least-squares fit on it) with the split itself (objective − mirror). The
observed PIR's own residual is the line to beat: the data's noise bounds it.
Prints its figures; writes nothing.
"""

from __future__ import annotations

import argparse

import torch
from scipy.stats import spearmanr

from pirtune.data.pir_dataset import read_pir_dataset
from pirtune.estimator.network import PIREstimator
from pirtune.objectives import ColourObjective


def beyond(values: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
    """``values`` less their least-squares fit on ``control`` (and a constant)."""
    basis = torch.stack([control, torch.ones_like(control)], dim=1)
    return values - basis @ torch.linalg.lstsq(basis, values[:, None]).solution.squeeze(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pir_data", help="a PIR dataset of color_green_red")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    records = read_pir_dataset(args.pir_data)
    images = records.images.float() / 255 if records.images.dtype == torch.uint8 \
        else records.images
    observed = (records.positives / records.impressions).float()
    target = ColourObjective(["green", "red"])(images)
    mirror = ColourObjective(["red", "green"])(images)
    torch.manual_seed(args.seed)
    order = torch.randperm(len(images))
    train, test = order[: int(0.8 * len(order))], order[int(0.8 * len(order)):]
    split = (target - mirror)[test]
    print(f"{len(images)} images; objective vs mirror: Spearman "
          f"{spearmanr(target, mirror)[0]:.3f}; SD of the split {split.std():.4f}")
    for backbone in ("small_cnn", "small_cnn_coord"):
        torch.manual_seed(args.seed)
        net = PIREstimator(backbone, bins=2, resolution=images.shape[-1])
        net.backbone[-1] = torch.nn.Linear(net.backbone[-1].in_features, 1)   # a regressor
        optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(args.epochs):
            net.train()
            for batch in train[torch.randperm(len(train))].split(32):
                loss = (net(images[batch]).squeeze(1) - observed[batch]).pow(2).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        with torch.no_grad():
            estimate = net.eval()(images[test]).squeeze(1)
        print(f"{backbone}: Spearman with the objective "
              f"{spearmanr(estimate, target[test])[0]:.3f}; beyond the mirror, with the split "
              f"{spearmanr(beyond(estimate, mirror[test]), split)[0]:.3f}")
    print(f"the observed PIR: beyond the mirror, with the split "
          f"{spearmanr(beyond(observed[test], mirror[test]), split)[0]:.3f}")


if __name__ == "__main__":
    main()
