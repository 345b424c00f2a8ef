"""Procedural coast and mountain landscapes: pirtune's embedded default dataset.

The paper this project follows trains its GAN on landscape photographs scraped from
the web. Those photos cannot be downloaded here, so this package paints a stand-in:
seeded, fully deterministic scenes of two classes, ``"coast"`` and ``"mountain"``,
rendered with vectorised numpy at any resolution of at least 16 pixels (designed to
read well at 32, 64 and 128).

* ``render`` – a scene from (seed, label, resolution), and batches of them;
* ``sky`` – gradient, sun or moon, stars, clouds, and the light they cast;
* ``terrain`` – mountain ridgelines, or sea, beach and headland;
* ``noise`` – the seeded value noise and ridge profiles the painters draw from;
* ``canvas`` – colours, the pixel grid, compositing and random draws;
* ``imagefolder`` – scenes written as a torchvision ``ImageFolder`` tree;
* ``cli`` – the ``pirtune-landscapes`` command that writes one.
"""

from pirtune.data.procedural.cli import main
from pirtune.data.procedural.imagefolder import write_imagefolder
from pirtune.data.procedural.render import CLASSES, MIN_RESOLUTION, render_batch, render_landscape

__all__ = [
    "CLASSES",
    "MIN_RESOLUTION",
    "main",
    "render_batch",
    "render_landscape",
    "write_imagefolder",
]
