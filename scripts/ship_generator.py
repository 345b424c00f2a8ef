"""Copy a pre-trained generator bundle into the package with its reproduction record.

    pirtune-train stage=pretrain name=cpu-pretrain
    python scripts/ship_generator.py runs/cpu-pretrain/generator.pt \
        src/pirtune/checkpoints/acgan-cpu.pt

Writes ``<out>.pt`` and ``<out>.md``: the exact command, seed, iterations,
the resolved model and data config, the software versions and the SHA-256 of
the bundle, so anyone can re-create it (``make run`` does when it is missing).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import yaml

from pirtune.models.bundle import load_bundle


def record(bundle_path: Path, digest: str, meta: dict, notes: str) -> str:
    """The Markdown reproduction record of a shipped bundle."""
    prov = meta["provenance"]
    config = yaml.safe_dump({"model": meta["model"], "data": prov["data"]}, sort_keys=False)
    lines = [
        f"# {bundle_path.name}",
        "",
        f"- command: `{prov['command']}`",
        f"- seed: {prov['seed']}",
        f"- iterations: {meta['iteration']} (one D and one G update each)",
        f"- torch {prov['torch']}, Python {prov['python']}",
        f"- sha256: `{digest}`",
        "",
    ]
    if notes:
        lines += [notes.strip(), ""]
    lines += ["## Resolved config", "", "```yaml", config.rstrip(), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="generator.pt written by stage=pretrain")
    parser.add_argument("out", type=Path,
                        help="destination, e.g. src/pirtune/checkpoints/acgan-cpu.pt")
    parser.add_argument("--notes", default="", help="extra Markdown for the record")
    args = parser.parse_args()
    _, _, meta = load_bundle(args.bundle)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.bundle, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    args.out.with_suffix(".md").write_text(record(args.out, digest, meta, args.notes))
    print(f"shipped {args.out} (sha256 {digest}) and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
