"""Train the landscape encoder the quality metrics use and ship it with its provenance.

    OMP_WAIT_POLICY=PASSIVE python scripts/train_encoder.py

Writes ``src/pirtune/checkpoints/encoder-cpu.pt`` (weights, loadable with weights_only)
and ``src/pirtune/checkpoints/encoder-cpu.json``: the command, seed, data (seed ranges,
resolution, counts), the augmentation ranges, the SHA-256 of the weights,
held-out class accuracy and blur error, parameter count, minutes and machine.
"""

from __future__ import annotations

import argparse
import os
import sys

# Set before torch starts its thread pool, so the run uses exactly this many cores.
THREADS = int(os.environ.setdefault("OMP_NUM_THREADS", "2"))

import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from pirtune.metrics import encoder as enc  # noqa: E402
from pirtune.metrics.encoder_training import (  # noqa: E402
    evaluate,
    parameter_count,
    scenes,
    train_encoder,
)

# Seed ranges far from the data module's (seed·1,000,003 + i for small seeds), and
# from each other, so held-out scenes are never training scenes.
TRAIN_FIRST_SEED = 10_000_000
HELD_OUT_FIRST_SEED = 20_000_000


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=enc.SHIPPED, help="weights file (.pt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-images", type=int, default=24_000)
    parser.add_argument("--held-out-images", type=int, default=4_000)
    parser.add_argument("--steps", type=int, default=1_200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--feature-dim", type=int, default=128)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(THREADS)

    start = time.perf_counter()
    images, labels = scenes(TRAIN_FIRST_SEED, args.train_images)
    held_images, held_labels = scenes(HELD_OUT_FIRST_SEED, args.held_out_images)
    render_minutes = (time.perf_counter() - start) / 60
    logging.info("rendered %d + %d scenes in %.1f min", len(images), len(held_images),
                 render_minutes)
    encoder = train_encoder(images, labels, args.steps, args.batch_size, args.lr,
                            seed=args.seed,
                            encoder=enc.LandscapeEncoder(args.width, args.feature_dim))
    minutes = (time.perf_counter() - start) / 60
    held_out = evaluate(encoder, held_images, held_labels, seed=args.seed + 1)
    logging.info("held out: %s", held_out)

    data = {
        "source": "pirtune.data.landscapes.render_batch, classes alternating (coast, mountain)",
        "resolution": enc.RESOLUTION,
        "train": {"first_seed": TRAIN_FIRST_SEED, "count": args.train_images},
        "held_out": {"first_seed": HELD_OUT_FIRST_SEED, "count": args.held_out_images},
        "augmentation": {"blur_sigma_px": [0, enc.MAX_BLUR_SIGMA], "p_blur": 0.6,
                         "log_gain": [-enc.MAX_LOG_GAIN, enc.MAX_LOG_GAIN],
                         "brightness": [-enc.MAX_BRIGHTNESS, enc.MAX_BRIGHTNESS],
                         "p_colour": 0.5, "noise_sd": [0, enc.MAX_NOISE_SD], "p_noise": 0.3,
                         "hflip": 0.5},
    }
    training = {"steps": args.steps, "batch_size": args.batch_size, "optimizer": "AdamW",
                "lr": args.lr, "schedule": "one-cycle, 10 % warm-up", "weight_decay": 1e-4}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    enc.save_encoder(encoder, args.out, {"seed": args.seed, "data": data, "training": training})
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    provenance = {
        "file": args.out.name,
        "command": " ".join(["python", *sys.argv]),
        "seed": args.seed,
        "data": data,
        "training": training,
        "model": {**encoder.config, "resolution": enc.RESOLUTION,
                  "features": "penultimate layer (ReLU of a dense layer over the 4x4 map)",
                  "heads": {"class": 2, "augmentation": list(enc.TARGETS),
                            "layout": 3 * enc.LAYOUT ** 2}},
        "parameters": parameter_count(encoder),
        "bytes": args.out.stat().st_size,
        "sha256": digest,
        "held_out": held_out.as_dict(),
        "minutes": round(minutes, 2),
        "minutes_rendering": round(render_minutes, 2),
        "machine": {"cpu": _cpu_model(), "threads": THREADS,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
                    "shared": "with other jobs", "platform": platform.platform()},
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    json_path = args.out.with_suffix(".json")
    json_path.write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {args.out} ({provenance['parameters']} parameters, sha256 {digest}) "
          f"and {json_path}")


if __name__ == "__main__":
    main()
