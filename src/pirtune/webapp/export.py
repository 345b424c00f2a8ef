"""``pirtune-export``: the interaction log as a PIR dataset, ready for ``stage=estimate``.

Every image a person was shown in a round they answered is one row:
impressions = the times that image (the same latent and class) was shown in
answered rounds, positives = the times it was picked. A round left open (a
session's last round, or a session abandoned at round 1) is not counted: it
was never judged, so it says nothing about the four images. The images are
rendered from the stored latents by the generator the sessions used, so the
dataset holds exactly what people saw.

    pirtune-export --db runs/webapp/interactions.db --out runs/webapp/pir_data
    pirtune-train stage=estimate data=interactions data.path=runs/webapp/pir_data

``data.path`` also takes the log itself; ``stage=estimate`` then exports it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

from pirtune.data.pir_dataset import write_pir_dataset
from pirtune.errors import UsageError
from pirtune.models.acgan import load_bundle, render
from pirtune.paths import SHIPPED_GENERATOR
from pirtune.webapp.store import InteractionLog


def export_pir_dataset(log: InteractionLog, out: str | Path, generator: nn.Module,
                       batch_size: int = 256) -> Path:
    """Write every image shown in an answered round of ``log`` as a PIR dataset at ``out``;
    return ``out``."""
    shown = log.shown(answered=True)
    if not shown:
        raise UsageError(f"{log.path} holds no answered rounds yet; nothing to export")
    counts: dict[tuple[str, int], list[int]] = {}   # (latent, class) -> [impressions, positives]
    for item in shown:
        tally = counts.setdefault((json.dumps(item.latent), item.cls), [0, 0])
        tally[0] += 1
        tally[1] += int(item.picked)
    latents = torch.tensor([json.loads(latent) for latent, _ in counts], dtype=torch.float32)
    if latents.shape[1] != generator.latent_dim:
        raise UsageError(f"the log's latents have {latents.shape[1]} dimensions but the "
                         f"generator takes {generator.latent_dim}; give the sessions' generator")
    classes = torch.tensor([cls for _, cls in counts])
    images = render(generator, latents, classes, batch_size)
    impressions, positives = zip(*counts.values(), strict=True)
    return write_pir_dataset(
        out, (images * 255).round().to(torch.uint8), classes, list(impressions),
        list(positives), latents=latents,
        image_ids=[f"shown_{i:06d}" for i in range(len(counts))],
        meta={"source": "interactions", "db": str(log.path),
              "sessions": len({item.session_id for item in shown}),
              "shown": len(shown), "picks": sum(item.picked for item in shown),
              "counted": "answered rounds only: an open round was shown but never judged",
              "unanswered_shown": len(log.shown()) - len(shown)},
    )


def main(argv: list[str] | None = None) -> None:
    """Console script ``pirtune-export``."""
    parser = argparse.ArgumentParser(prog="pirtune-export", description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="the interaction log (SQLite)")
    parser.add_argument("--out", type=Path, required=True, help="the PIR dataset to write")
    parser.add_argument("--checkpoint", type=Path,
                        default=SHIPPED_GENERATOR,
                        help="the generator bundle the sessions used")
    args = parser.parse_args(argv)
    try:
        if not args.db.is_file():
            raise UsageError(f"interaction log {args.db} does not exist; give the --db the "
                             "server wrote")
        generator, _, _ = load_bundle(args.checkpoint)
        out = export_pir_dataset(InteractionLog(args.db), args.out, generator)
    except UsageError as err:
        print(f"pirtune-export: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"PIR dataset written to {out}; train on it with "
          f"`pirtune-train stage=estimate data=interactions data.path={out}`")


if __name__ == "__main__":
    main()
