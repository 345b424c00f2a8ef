"""Time one VGG16 bank pass: every filter of every layer for N images, in one forward each.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench/vgg_bank.py --n 1000 --threads 2

Images are procedural landscapes at the CPU scale (32 px), resized to
``--input-size`` inside the bank. Weights are random unless ImageNet weights
are in torch's cache (``--weights imagenet``); the time does not depend on them.
Run it alone: a second busy process distorts CPU figures.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pirtune.data.procedural import render_batch
from pirtune.objectives import VGGFeatureBank, score_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = render_batch(range(args.n), [i % 2 for i in range(args.n)], args.resolution)
    bank = VGGFeatureBank(weights=args.weights, input_size=args.input_size).to(args.device)
    score_all(bank, images[: args.batch_size], args.batch_size)  # warm-up
    start = time.perf_counter()
    scores = score_all(bank, images, args.batch_size)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "images": args.n, "input_size": args.input_size, "device": args.device,
        "threads": torch.get_num_threads(), "seconds": round(seconds, 1),
        "ms_per_image": round(1000 * seconds / args.n, 1),
        "images_per_s": round(args.n / seconds, 1),
        "filters_scored": sum(v.shape[1] for v in scores.values()),
    }))


if __name__ == "__main__":
    main()
