"""The ``pirtune-landscapes`` command line."""

from __future__ import annotations

import argparse
import pathlib

from pirtune.data.procedural.imagefolder import write_imagefolder
from pirtune.data.procedural.render import MIN_RESOLUTION


def _positive_int(text: str) -> int:
    """Parses an image count for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _resolution(text: str) -> int:
    """Parses a resolution for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < MIN_RESOLUTION:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_RESOLUTION}, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    """Runs the ``pirtune-landscapes`` command line: writes an ImageFolder of scenes.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.
    """
    parser = argparse.ArgumentParser(
        prog="pirtune-landscapes",
        description="Write procedural coast/mountain scenes as <out>/<class>/<id>.png.",
    )
    parser.add_argument("--out", required=True, type=pathlib.Path, help="output directory")
    parser.add_argument("--n", type=_positive_int, default=1000, help="number of images")
    parser.add_argument("--resolution", type=_resolution, default=64, help="side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="data-set seed")
    args = parser.parse_args(argv)
    root = write_imagefolder(args.out, args.n, args.resolution, args.seed)
    print(f"wrote {args.n} scenes ({args.resolution}x{args.resolution}) to {root}")


if __name__ == "__main__":
    main()
