"""How close generated images are to real ones, in a feature space: FID, KID,
precision/recall, density/coverage and class readability.

Every function takes images in [0, 1] ([N, 3, H, W], float) and a feature
network (any ``nn.Module`` mapping such a batch to [N, d] features): by
default the landscape encoder trained here and shipped in
``src/pirtune/checkpoints/encoder-cpu.pt`` (``encoder``), or Inception v3 from the torch
cache for standard FID (``feature_network("inception")``). FID and KID are
torchmetrics' own, with the network as their ``feature``; the
k-nearest-neighbour metrics are computed here on the same features:

* precision and recall (Kynkäänniemi et al. 2019): the share of generated
  samples inside the union of the real samples' k-NN balls, and of real
  samples inside the generated ones';
* density and coverage (Naeem et al. 2020): how many real k-NN balls contain
  a generated sample on average (/k), and the share of real balls that
  contain at least one.

A figure means little alone: ``floor`` scores two disjoint halves of the real
data against each other, the value a perfect generator would get at that
sample size. A tuned generator is meant to leave the real distribution:
``tilted_quality`` scores it against real images reweighted to its gain in
true PIR (``tilted``), what the real data would give at the same gain.
"""

from pirtune.metrics.encoder import LandscapeEncoder, blur, colour_shift, load_encoder
from pirtune.metrics.features import FEATURES, feature_network
from pirtune.metrics.quality import (
    Quality,
    class_accuracy,
    compare,
    density_coverage,
    extract,
    fid,
    fid_from_features,
    figure_table,
    floor,
    kid,
    kid_from_features,
    precision_recall,
    quality,
    quality_from_features,
)
from pirtune.metrics.tilted import Tilt, TiltedQuality, TiltError, resample, tilt, tilted_quality

__all__ = [
    "FEATURES",
    "LandscapeEncoder",
    "Quality",
    "Tilt",
    "TiltError",
    "TiltedQuality",
    "blur",
    "class_accuracy",
    "colour_shift",
    "compare",
    "density_coverage",
    "extract",
    "feature_network",
    "fid",
    "fid_from_features",
    "figure_table",
    "floor",
    "kid",
    "kid_from_features",
    "load_encoder",
    "precision_recall",
    "quality",
    "quality_from_features",
    "resample",
    "tilt",
    "tilted_quality",
]
