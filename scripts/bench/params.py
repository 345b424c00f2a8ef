"""Parameter counts of the ACGAN: the shipped CPU generator bundle and each experiment config.

    python scripts/bench/params.py            # writes docs/bench/params.{json,md}

Counts every parameter (trainable or not, buffers excluded) of the networks
the configs build and of the networks in the shipped bundle, so a README
figure can be checked against the model that is actually shipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from pirtune.compose import register_resolvers
from pirtune.models.bundle import load_bundle
from pirtune.paths import CONFIG_DIR, SHIPPED_GENERATOR

REPO = Path(__file__).resolve().parents[2]


def count(network: nn.Module) -> int:
    """Number of parameters of ``network``."""
    return sum(p.numel() for p in network.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "params")
    args = parser.parse_args()
    register_resolvers()
    rows = []
    for experiment in ("cpu", "paper"):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"experiment={experiment}"])
        rows.append({"networks": f"experiment={experiment}",
                     "resolution": cfg.model.generator.resolution,
                     "width": cfg.model.generator.width,
                     "generator": count(instantiate(cfg.model.generator)),
                     "discriminator": count(instantiate(cfg.model.discriminator))})
    generator, discriminator, bundle = load_bundle(SHIPPED_GENERATOR)
    shipped = bundle["model"]["generator"]
    rows.append({"networks": f"shipped {SHIPPED_GENERATOR.name}",
                 "resolution": shipped["resolution"], "width": shipped["width"],
                 "generator": count(generator), "discriminator": count(discriminator)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["Parameters of the ACGAN's networks. Made by `python scripts/bench/params.py`.", "",
             "| networks | resolution | width | generator | discriminator |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['networks']} | {r['resolution']} | {r['width']} | {r['generator']:,} "
              f"| {r['discriminator']:,} |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
