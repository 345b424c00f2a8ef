"""Quality metrics: their cost on CPU, and generators scored beside the real-vs-real floor.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench/quality.py                 # shipped generator
    python scripts/bench/quality.py --generator new=runs/x/generator.pt     # more rows
    python scripts/bench/quality.py --generator a=A.pt --minutes a=95       # training time

Each generator also gets a row in a table of recipes: its training recipe
(read from the bundle's model config), iterations, training minutes (the
bundle's provenance, or ``--minutes``) and its headline figures.

Real scenes are fresh procedural ones at 32 px (two disjoint sets, seeds from
40,000,000 and 41,000,000, classes alternating), never seen by the encoder.
Every set is scored against the first real set: the second real set (the
floor: what a perfect generator would score at this sample size), the second
set blurred by σ = 0.5 and 1 px (what slightly soft scenes score), and each
generator's samples (seeded latents, classes alternating). Class accuracy is
the encoder's reading of each image's intended class.

Writes ``<out>.json``, ``<out>.md`` and ``<out>.png`` (a grid: real, real
blurred by 1 px and generated scenes of each class).
"""

from __future__ import annotations

import argparse
import os

# Set before torch starts its thread pool, so the figures are for exactly this many cores.
THREADS = int(os.environ.setdefault("OMP_NUM_THREADS", "2"))

import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from pirtune.data.landscapes import CLASSES  # noqa: E402
from pirtune.metrics import (  # noqa: E402
    Quality,
    blur,
    compare,
    density_coverage,
    extract,
    feature_network,
    fid_from_features,
    kid_from_features,
    precision_recall,
)
from pirtune.metrics.encoder import SHIPPED  # noqa: E402
from pirtune.metrics.encoder_training import scenes  # noqa: E402
from pirtune.models.bundle import draw_latents, load_sampler, render  # noqa: E402
from pirtune.paths import SHIPPED_GENERATOR  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
REAL_SEEDS = (40_000_000, 41_000_000)
_LABELS = list(Quality(*[0.0] * 7, class_accuracy={}).cells(CLASSES))  # the table's columns
BLURS = (0.5, 1.0)
K = 5


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def cost(network: torch.nn.Module, real: torch.Tensor, other: torch.Tensor,
         kid_subsets: int) -> dict:
    """Seconds and images per second of each step, for two sets of len(real) images."""
    extract(network, real[:64])  # warm-up
    (a, b), seconds = _timed(lambda: (extract(network, real), extract(network, other)))
    feature_rate = 2 * len(real) / seconds
    out = {"images_per_set": len(real), "features_images_per_s": feature_rate}
    for name, fn in (("fid", lambda: fid_from_features(a, b)),
                     ("kid", lambda: kid_from_features(a, b, subsets=kid_subsets)),
                     ("precision_recall", lambda: precision_recall(a, b, K)),
                     ("density_coverage", lambda: density_coverage(a, b, K))):
        _, metric_seconds = _timed(fn)
        out[name] = {"seconds_on_features": metric_seconds,
                     "images_per_s": 2 * len(real) / (seconds + metric_seconds)}
    return out


def grid(rows: list[tuple[str, torch.Tensor]], path: Path) -> None:
    """One labelled row of images per (label, images [n, 3, R, R]) pair, saved as a PNG."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.25 * len(rows)))
    for ax, (label, images) in zip(axes, rows, strict=True):
        ax.imshow(make_grid(images, nrow=len(images), padding=1, pad_value=1)
                  .permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(row: dict) -> str:
    q = Quality.from_dict({k: v for k, v in row.items() if k != "name"}, CLASSES)
    return f"| {row['name']} | " + " | ".join(q.cells(CLASSES).values()) + " |"


def recipe(model: dict) -> str:
    """A one-line summary of how a bundle's networks were trained (its model config)."""
    g, d = model["generator"], model["discriminator"]
    d_opt = model["d_optimizer"]["_target_"].rsplit(".", 1)[-1]
    parts = [f"G ×{g.get('width', 1)} {g.get('norm', 'none')} norm",
             f"D ×{d.get('width', 1)} {d.get('norm', 'batch')} norm, {d.get('head', 'ac')} head",
             f"{model.get('loss', 'paper')} loss",
             f"G lr {model['g_optimizer']['lr']:g}, D {d_opt} lr {model['d_optimizer']['lr']:g}",
             f"w_fake_class {model.get('w_fake_class')}"]
    if model.get("augment"):
        parts.append(f"DiffAugment {model['augment']}")
    if model.get("r1_gamma"):
        parts.append(f"R1 γ {model['r1_gamma']:g}")
    if model.get("ema_decay"):
        parts.append(f"EMA {model['ema_decay']}")
    return ", ".join(parts)


def recipes_table(result: dict) -> list[str]:
    rows = {row["name"]: row for row in result["rows"]}
    lines = ["| generator | recipe | iterations | minutes | FID | KID ×10³ | precision | recall | "
             + " | ".join(f"class acc. {c}" for c in CLASSES) + " |",
             "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(CLASSES)]
    for name, info in result["recipes"].items():
        row = rows[name]
        minutes = f"{info['minutes']:.0f}" if info.get("minutes") is not None else "–"
        accuracy = row.get("class_accuracy") or {}
        lines.append(
            f"| {name} | {info['recipe']} | {info['iterations']} | {minutes} | {row['fid']:.2f} | "
            f"{row['kid'] * 1e3:.1f} | {row['precision']:.3f} | {row['recall']:.3f} | "
            + " | ".join(f"{accuracy.get(c, float('nan')):.3f}" for c in CLASSES) + " |")
    return lines


def markdown(result: dict) -> str:
    c = result["cost"]
    enc = result["encoder"]
    lines = [
        f"Quality metrics in the {result['features']} feature space "
        f"({result['feature_dim']} features) on CPU ({result['machine']['cpu']}, "
        f"{result['machine']['threads']} threads, torch {result['machine']['torch']}; the "
        "machine was shared with other jobs). "
        f"{result['images_per_set']} images per set, k = {K}, KID over {result['kid_subsets']} "
        f"subsets of {min(result['images_per_set'], 1000)}. Real scenes: fresh procedural "
        "32 px scenes the encoder never saw; every row is scored against the same first real "
        "set. Made by `python scripts/bench/quality.py`.",
        "",
        "| set vs real | " + " | ".join(_LABELS) + " |",
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(CLASSES),
        *(_fmt(row) for row in result["rows"]),
        "",
        "Class accuracy is the share of a set's images of each class that the encoder's "
        "class head reads as that class (for real and blurred rows, their true class; for a "
        "generator, the class it was asked for).",
        "",
    ]
    if result.get("recipes"):
        lines += ["Recipes tried (iterations and minutes of pre-training on the CPU named in "
                  "the generator's provenance):", "", *recipes_table(result), ""]
    if enc:
        held = enc["held_out"]
        lines += [
            f"The encoder (`{enc['file']}`, {enc['parameters']:,} parameters, "
            f"{enc['bytes'] / 1e6:.1f} MB, trained in {enc['minutes']:.0f} min): held-out class "
            f"accuracy {held['class_accuracy']:.3f} on {held['images']} fresh scenes; blur σ "
            f"read back with a mean error of {held['blur_mae_px']:.3f} px.",
            "",
        ]
    lines += [
        f"Cost ({c['images_per_set']} + {c['images_per_set']} images): encoder features "
        f"{c['features_images_per_s']:.0f} images/s.",
        "",
        "| metric | seconds on features | images/s end to end (features + metric) |",
        "|---|---:|---:|",
        *(f"| {name} | {c[name]['seconds_on_features']:.3f} | {c[name]['images_per_s']:.0f} |"
          for name in ("fid", "kid", "precision_recall", "density_coverage")),
        "",
        f"Samples: `{result['grid']}`. The whole benchmark took {result['minutes']:.1f} min.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images per set")
    parser.add_argument("--generator", action="append", default=None,
                        help="name=path of a generator bundle; repeatable "
                             "(default: acgan-cpu.pt=the shipped generator)")
    parser.add_argument("--minutes", action="append", default=[],
                        help="name=minutes of a generator's training, when its bundle does "
                             "not record them; repeatable")
    parser.add_argument("--features", default="landscape", help="landscape or inception")
    parser.add_argument("--kid-subsets", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the generators' latents and of KID's subsets")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "quality")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    torch.manual_seed(args.seed)  # KID draws its subsets from the global generator
    start = time.perf_counter()
    generators = args.generator or [f"acgan-cpu.pt={SHIPPED_GENERATOR}"]

    network = feature_network(args.features)
    classifier = getattr(network, "classifier", None)
    n = args.images
    (real, _), render_seconds = _timed(scenes, REAL_SEEDS[0], n)
    other, labels = scenes(REAL_SEEDS[1], n)
    result = {"features": args.features, "images_per_set": n, "kid_subsets": args.kid_subsets,
              "real_seeds": list(REAL_SEEDS), "k": K,
              "render_images_per_s": n / render_seconds}
    result["cost"] = cost(network, real, other, args.kid_subsets)
    result["feature_dim"] = int(extract(network, real[:2]).shape[1])

    sets = [("real vs real (floor)", other)]
    sets += [(f"real blurred σ = {s:g} px", blur(other, s)) for s in BLURS]
    samples = {}
    minutes = {name: float(m) for name, _, m in (spec.partition("=") for spec in args.minutes)}
    result["recipes"] = {}
    for spec in generators:
        name, _, path = spec.partition("=")
        generator, meta = load_sampler(path)
        result["recipes"][name] = {
            "recipe": recipe(meta["model"]), "iterations": meta.get("iteration"),
            "minutes": minutes.get(name, meta.get("provenance", {}).get("minutes")),
        }
        z = draw_latents(generator, labels, torch.Generator().manual_seed(args.seed))
        samples[name] = render(generator, z, labels)
        sets.append((name, samples[name]))
    scores = compare(real, {name: (images, labels) for name, images in sets}, network, K,
                     classifier, args.kid_subsets, seed=args.seed)
    result["rows"] = [{"name": name, **q.as_dict(CLASSES)} for name, q in scores.items()]
    for row in result["rows"]:
        print(_fmt(row))

    per_class = 10
    picks = [torch.nonzero(labels == c).flatten()[:per_class] for c in range(len(CLASSES))]
    rows = []
    for c, pick in enumerate(picks):
        rows += [(f"real {CLASSES[c]}", other[pick]),
                 (f"real {CLASSES[c]}, σ = 1 px", blur(other[pick], 1.0))]
        rows += [(f"{name} {CLASSES[c]}", images[pick]) for name, images in samples.items()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid(rows, args.out.with_suffix(".png"))
    result["grid"] = str(args.out.with_suffix(".png").relative_to(REPO)
                         if args.out.is_relative_to(REPO) else args.out.with_suffix(".png"))
    result["generators"] = dict(g.partition("=")[::2] for g in generators)
    encoder_json = SHIPPED.with_suffix(".json")
    result["encoder"] = (json.loads(encoder_json.read_text())
                         if args.features == "landscape" and encoder_json.is_file() else None)
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    result["machine"] = {"cpu": cpu, "threads": THREADS, "torch": torch.__version__}
    result["minutes"] = (time.perf_counter() - start) / 60
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
