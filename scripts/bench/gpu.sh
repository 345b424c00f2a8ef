#!/usr/bin/env bash
# GPU throughput figures for the README: the paper's ACGAN and the CPU-sized one
# on one GPU, Lightning against a plain loop, eager fp32, bf16, and compiled.
# Usage: scripts/bench/gpu.sh [results.json]   (a JSON list; default docs/bench/throughput.json)
set -u
out=${1:-docs/bench/throughput.json}
bench="python3 scripts/bench/pretrain_throughput.py --json $out"
nvidia-smi -L
$bench --iters 300 --warmup 30 experiment=paper trainer=gpu trainer.precision=32-true
$bench --iters 300 --warmup 30 experiment=paper trainer=gpu
$bench --iters 300 --warmup 30 trainer=gpu trainer.precision=32-true
timeout 240 $bench --iters 500 --warmup 50 --compile default experiment=paper trainer=gpu
timeout 240 $bench --iters 500 --warmup 50 --compile reduce-overhead experiment=paper trainer=gpu
