"""The procedural scenes' public names where code first imported them; they live in
:mod:`pirtune.data.procedural`."""

from pirtune.data.procedural import (
    CLASSES,
    MIN_RESOLUTION,
    main,
    render_batch,
    render_landscape,
    write_imagefolder,
)

__all__ = [
    "CLASSES",
    "MIN_RESOLUTION",
    "main",
    "render_batch",
    "render_landscape",
    "write_imagefolder",
]
