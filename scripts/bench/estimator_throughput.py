"""Time a PIR estimator's network: images per second scored (frozen) and trained on.

    python scripts/bench/estimator_throughput.py --backbone inception_v3 --device cuda

Scoring is what tuning and the checks do with the frozen estimator (no
gradients); training is the estimate stage's step (forward, backward, Adam).
Random weights and random images at ``--resolution`` (inception_v3 resizes to
299 px itself): the time does not depend on them. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch

from pirtune.estimator.network import PIREstimator


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _images_per_s(fn, batches: int, warmup: int, batch_size: int,
                  device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        fn()
    _sync(device)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="inception_v3")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=30, help="timed batches")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    network = PIREstimator(args.backbone, resolution=args.resolution).to(device)
    if args.channels_last:
        network.to(memory_format=torch.channels_last)
    images = torch.rand(args.batch_size, 3, args.resolution, args.resolution, device=device)
    targets = torch.randint(network.bins, (args.batch_size,), device=device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16
                else contextlib.nullcontext())
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)

    @torch.no_grad()
    def score() -> None:
        with autocast:
            network(images)

    def train() -> None:
        with autocast:
            loss = torch.nn.functional.cross_entropy(network(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    timing = (args.batches, args.warmup, args.batch_size, device)
    network.eval()
    scored = _images_per_s(score, *timing)
    network.train()
    trained = _images_per_s(train, *timing)
    print(json.dumps({
        "backbone": args.backbone, "device": str(device),
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "batch": args.batch_size, "input_size": network.resolution, "bf16": args.bf16,
        "channels_last": args.channels_last, "timed_batches": args.batches,
        "score_images_per_s": round(scored, 1), "train_images_per_s": round(trained, 1),
    }))


if __name__ == "__main__":
    main()
