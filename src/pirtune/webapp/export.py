"""``pirtune-export``: the interaction log as a PIR dataset, ready for ``stage=estimate``.

Every image a person was shown in a round they answered is one row:
impressions = the times that image (the same generator, latent and class) was
shown in answered rounds, positives = the times it was picked. A round left
open (a session's last round, or a session abandoned at round 1) is not
counted: it was never judged, so it says nothing about the four images. The
images are rendered from the stored latents by the generator each session
used (its bundle's SHA-256 is in the log), so the dataset holds exactly what
people saw. ``rounds.csv`` beside ``pir.csv`` keeps every answered round: its
four candidates' image ids and the answer, which the choice model learns
from, with its session's generator and prior (the SHA-256 of the choice model
its search started from, ``pirtune-serve --prior``; empty without one). The
answer (column ``picked``) is the picked slot ``0``–``3``, or ``same`` for
"these look the same" (``Feedback.to_export``): a reader that expects a slot
fails on it rather than reading a pick. In ``pir.csv`` a "same" round is an
impression of each of its four images and a positive for none: they were
shown and judged, and none was chosen over the others.

    pirtune-export --db runs/webapp/interactions.db --out runs/webapp/pir_data
    pirtune-train stage=estimate data=interactions data.path=runs/webapp/pir_data

A log whose sessions were served by several generators (the shipped one, then
a tuned one) needs every one: ``--checkpoint`` repeated, or a folder searched
for the bundle with each session's checksum. ``data.path`` also takes the log
itself; ``stage=estimate`` then exports it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from pirtune.data.pir_dataset import write_pir_dataset
from pirtune.errors import UsageError
from pirtune.files import file_sha256
from pirtune.models.bundle import load_sampler, render
from pirtune.paths import SHIPPED_GENERATOR
from pirtune.search.feedback import SAME, Feedback
from pirtune.webapp.store import InteractionLog

ROUNDS_NAME = "rounds.csv"
ROUNDS_HEADER = ["session_id", "round", "generator", "prior", "slot0", "slot1", "slot2",
                 "slot3", "picked"]


def bundle_sha256(path: str | Path) -> str:
    """The SHA-256 (hex) of a generator bundle file, as ``save_bundle`` returns it."""
    return file_sha256(path)


def find_generators(log: InteractionLog, paths: Sequence[str | Path]) -> dict[str | None, Path]:
    """The bundle of every generator the log's sessions used: checksum → path.

    ``paths`` are bundles, or folders searched (recursively) for ``*.pt`` files
    with a session's checksum. Sessions logged before sessions kept their
    generator (checksum None) are taken to have used the first bundle given.

    Raises:
        UsageError: a session's generator is none of the bundles found; the
            message names the session, the checksum and how to pass it.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(path.rglob("*.pt"))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"generator {path} does not exist; give a generator bundle "
                             "(generator.pt, tuned.pt) or a folder holding them")
    by_sum: dict[str | None, Path] = {}
    if files:
        by_sum[None] = files[0]
    needed = log.generators()
    wanted = {checksum for checksum in needed.values() if checksum is not None}
    for file in files:
        if wanted <= by_sum.keys():
            break   # every generator found: no more files to hash
        by_sum.setdefault(bundle_sha256(file), file)
    given = ", ".join(str(p) for p in paths) or "none"
    for session_id, checksum in needed.items():
        if checksum in by_sum:
            continue
        what = (f"the generator with sha256 {checksum}" if checksum is not None
                else "a generator it did not record (an older log)")
        raise UsageError(
            f"session {session_id} was served by {what}, which is none of the generators "
            f"given ({given}); pass its bundle too (pirtune-export --checkpoint <bundle> "
            "again, or data.generators=[<bundle or folder>, ...])")
    return {checksum: by_sum[checksum] for checksum in dict.fromkeys(needed.values())}


def export_pir_dataset(log: InteractionLog, out: str | Path,
                       generator: nn.Module | Mapping[str | None, nn.Module],
                       batch_size: int = 256) -> Path:
    """Write every image shown in an answered round of ``log`` as a PIR dataset at ``out``,
    and its answered rounds to ``out/rounds.csv``; return ``out``.

    Args:
        generator: the generator of every session, or generators by the checksum
            each session logged (``find_generators``; key None for sessions that
            logged none).
    """
    shown = log.shown(answered=True)
    if not shown:
        raise UsageError(f"{log.path} holds no answered rounds yet; nothing to export")
    used = log.generators()
    priors = log.priors()
    if isinstance(generator, nn.Module):
        generators: Mapping[str | None, nn.Module] = {key: generator for key in used.values()}
    else:
        generators = generator
    # (generator, latent, class) -> [impressions, positives]; the same latent drawn by
    # another generator is another image.
    counts: dict[tuple[str | None, str, int], list[int]] = {}
    rounds: dict[tuple[str, int], list] = {}
    for item in shown:
        checksum = used[item.session_id]
        if checksum not in generators:
            raise UsageError(f"session {item.session_id} was served by the generator with "
                             f"sha256 {checksum}, and no generator was given for it; pass "
                             "its bundle too")
        key = (checksum, json.dumps(item.latent), item.cls)
        tally = counts.setdefault(key, [0, 0])
        tally[0] += 1
        tally[1] += int(item.picked)
        entry = rounds.setdefault((item.session_id, item.round),
                                  [checksum, [None] * 4, SAME if item.same else None])
        entry[1][item.slot] = key
        if item.picked:
            entry[2] = Feedback.pick(item.slot)
    keys = list(counts)
    ids = {key: f"shown_{i:06d}" for i, key in enumerate(keys)}
    latents = torch.tensor([json.loads(latent) for _, latent, _ in keys], dtype=torch.float32)
    classes = torch.tensor([cls for _, _, cls in keys])
    images = torch.empty(0)
    for checksum in dict.fromkeys(key[0] for key in keys):
        network = generators[checksum]
        if latents.shape[1] != network.latent_dim:
            raise UsageError(f"the log's latents have {latents.shape[1]} dimensions but the "
                             f"generator takes {network.latent_dim}; give the sessions' "
                             "generator")
        mine = torch.tensor([key[0] == checksum for key in keys])
        drawn = render(network, latents[mine], classes[mine], batch_size)
        if images.numel() == 0:
            images = torch.zeros(len(keys), *drawn.shape[1:])
        images[mine] = drawn
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ROUNDS_NAME, "w", newline="") as f:   # before pir.csv, which comes last
        writer = csv.writer(f)
        writer.writerow(ROUNDS_HEADER)
        for (session_id, round_), (checksum, slots, picked) in rounds.items():
            prior = priors[session_id]
            writer.writerow([session_id, round_, checksum or "", prior.sha256 if prior else "",
                             *(ids[key] for key in slots), picked.to_export()])
    impressions, positives = zip(*counts.values(), strict=True)
    return write_pir_dataset(
        out, (images * 255).round().to(torch.uint8), classes, list(impressions),
        list(positives), latents=latents, image_ids=[ids[key] for key in keys],
        meta={"source": "interactions", "db": str(log.path),
              "sessions": len({item.session_id for item in shown}),
              "shown": len(shown), "picks": sum(item.picked for item in shown),
              "same": sum(answer.is_same for _, _, answer in rounds.values()),
              "generators": sorted({key[0] or "unrecorded" for key in keys}),
              "priors": sorted({priors[item.session_id].sha256 for item in shown
                                if priors[item.session_id] is not None}),
              "counted": "answered rounds only: an open round was shown but never judged",
              "unanswered_shown": len(log.shown()) - len(shown)},
    )


def main(argv: list[str] | None = None) -> None:
    """Console script ``pirtune-export``."""
    parser = argparse.ArgumentParser(prog="pirtune-export", description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="the interaction log (SQLite)")
    parser.add_argument("--out", type=Path, required=True, help="the PIR dataset to write")
    parser.add_argument("--checkpoint", type=Path, action="append",
                        help="a generator bundle the sessions used, or a folder holding "
                             "them; repeat it for logs of several generators (default: the "
                             "shipped generator)")
    args = parser.parse_args(argv)
    try:
        if not args.db.is_file():
            raise UsageError(f"interaction log {args.db} does not exist; give the --db the "
                             "server wrote")
        log = InteractionLog(args.db)
        found = find_generators(log, args.checkpoint or [SHIPPED_GENERATOR])
        generators = {checksum: load_sampler(path)[0] for checksum, path in found.items()}
        out = export_pir_dataset(log, args.out, generators)
    except UsageError as err:
        print(f"pirtune-export: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"PIR dataset written to {out}; train on it with "
          f"`pirtune-train stage=estimate data=interactions data.path={out}`")


if __name__ == "__main__":
    main()
