#!/usr/bin/env bash
# The device check of issue 18, in one script that fits in 8 minutes of one GPU:
#   1. pre-training iterations/s at batch 64, the paper's ACGAN: plain loop and
#      Lightning, each eager fp32, eager bf16 and as one CUDA graph per iteration
#      (model.whole_step=graph; fp32, and bf16 with channels-last);
#   2. tuning iterations/s with the frozen Inception v3 estimator inside the graph
#      (and eager, for comparison);
#   3. Inception v3 estimator images/s (scoring and training) and VGG16-bank images/s
#      at 224 px;
#   4. a paper-scale smoke: 2,000 pre-training iterations, then collect -> estimate
#      -> tune (2,000 steps) -> evaluate on color_blue (10,000 training images, not
#      the paper's 50,000, and 5 estimator epochs, to fit the time);
#   5. if time is left: torch.compile (default mode) inside the whole-step graph
#      (not in the dry run: compiling on the CPU takes a minute).
# Every figure lands in $OUT/gpu.json (plus each step's raw JSON and logs); a step
# that runs out of time or fails is recorded as such, never given a figure.
#
# Usage:  OUT=<dir> bash scripts/bench/gpu.sh             # on the GPU machine
#         OUT=<dir> bash scripts/bench/gpu.sh --dry-run   # CPU, tiny sizes, ~1 minute:
#           every step's code path at 16 px, the graph as its uncaptured step (static)
# Env:    PYTHON (default python3), BUDGET_S (seconds for all steps, default 450).
set -u
dry=0
[[ ${1:-} == --dry-run ]] && dry=1
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
budget=${BUDGET_S:-450}
mkdir -p "$OUT"
work=$(mktemp -d)
export PIRTUNE_HOME=$work  # the landscape cache and nothing else of ours
steps=$OUT/steps.jsonl
: > "$steps"
t_start=$(date +%s)

# step NAME CAP_SECONDS COMMAND...: run it under what is left of the budget (at most
# CAP), stdout to $OUT/NAME.out and stderr to $OUT/NAME.err; one line of steps.jsonl.
step() {
  local name=$1 cap=$2
  shift 2
  local left=$(( budget - ($(date +%s) - t_start) ))
  if (( left < 15 )); then
    echo "{\"step\": \"$name\", \"status\": \"skipped (budget spent)\"}" >> "$steps"
    return
  fi
  local limit=$(( cap < left ? cap : left ))
  local t0 t1 rc
  t0=$(date +%s.%N)
  timeout -k 5 "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
  rc=$?
  t1=$(date +%s.%N)
  local status=ok
  (( rc == 124 || rc == 137 )) && status="timed out after ${limit} s"
  (( rc != 0 && rc != 124 && rc != 137 )) && status="failed (exit $rc)"
  echo "{\"step\": \"$name\", \"status\": \"$status\", \"seconds\": $(echo "$t1 - $t0" | bc)}" \
    >> "$steps"
  echo "$name: $status"
}

if (( dry )); then
  # The TINY overrides of tests/conftest.py; the graph becomes its uncaptured step.
  tiny=(data.resolution=16 data.batch_size=8 data.cache_dir=null
        model.generator.width=0.125 model.discriminator.width=0.125)
  gan=(trainer=cpu "${tiny[@]}" data.num_images=64)
  graph=static
  iters=(--iters 2 --warmup 4)
  graph_iters=(--iters 2 --warmup 4)
  # Inception v3 at 299 px costs the CPU a minute in tuning and the loop: the estimator
  # step below runs it, tuning and the smoke use small_cnn (the same code path).
  tune_gan=("${gan[@]}" estimator=small_cnn)
  smoke_estimator=small_cnn
  estimator=(--batch-size 2 --batches 1 --warmup 1 --resolution 16 --device cpu)
  vgg=(--n 4 --batch-size 2 --input-size 32 --resolution 16 --threads 1 --device cpu)
  smoke_scale=("${tiny[@]}" data.num_images=64 trainer=cpu)
  smoke_pretrain=(pretrain.iterations=4 pretrain.sample_every=2 pretrain.checkpoint_every=2
                  pretrain.quality_samples=16)
  smoke_loop=(collect.num_images=32 estimator.epochs=1 estimator.batch_size=8 tune.steps=4
              tune.eval_every=2 tune.eval_samples=16 tune.checkpoint_every=2
              evaluate.num_samples=32)
  smoke_quality=(quality.samples=16 quality.kid_subsets=5)
  compile_iters=()  # torch.compile on the CPU takes a minute: skipped in the dry run
else
  nvidia-smi -L > "$OUT/nvidia-smi.txt" 2>&1
  gan=(experiment=paper trainer=gpu)
  graph=graph
  iters=(--iters 200 --warmup 30)
  graph_iters=(--iters 1000 --warmup 30)
  tune_gan=("${gan[@]}" estimator=inception_v3)
  smoke_estimator=inception_v3
  estimator=(--batch-size 64 --batches 30 --warmup 5 --bf16 --channels-last --device cuda)
  vgg=(--n 2000 --batch-size 100 --input-size 224 --resolution 64 --device cuda)
  smoke_scale=(data.num_images=10000 trainer=gpu)
  smoke_pretrain=(pretrain.iterations=2000 pretrain.sample_every=1000
                  pretrain.checkpoint_every=1000 pretrain.quality_samples=500)
  smoke_loop=(estimator.epochs=5 tune.steps=2000 tune.eval_every=1000 tune.checkpoint_every=1000)
  smoke_quality=()
  compile_iters=(--iters 500 --warmup 30)
fi

bench="$PY scripts/bench/pretrain_throughput.py"
# Most wanted first: if the budget runs out, the tail is what goes missing.
step pretrain_bf16_graph 90 $bench "${graph_iters[@]}" --whole-step $graph --channels-last \
  --json "$OUT/pretrain.json" "${gan[@]}" trainer.precision=bf16-mixed
step pretrain_bf16 90 $bench "${iters[@]}" --json "$OUT/pretrain.json" "${gan[@]}" \
  trainer.precision=bf16-mixed
step pretrain_fp32 90 $bench "${iters[@]}" --json "$OUT/pretrain.json" "${gan[@]}" \
  trainer.precision=32-true
step pretrain_fp32_graph 90 $bench "${graph_iters[@]}" --whole-step $graph \
  --json "$OUT/pretrain.json" "${gan[@]}" trainer.precision=32-true
step tune_bf16_graph 90 $bench --tune "${iters[@]}" --whole-step $graph --channels-last \
  --json "$OUT/tune.json" "${tune_gan[@]}" trainer.precision=bf16-mixed
step smoke_pretrain 150 $PY -m pirtune.train stage=pretrain run_dir="$work/smoke/pretrain" \
  experiment=paper objective=color_blue logger=csv progress=false model.whole_step=$graph \
  model.channels_last=true "${smoke_scale[@]}" "${smoke_pretrain[@]}" "${smoke_quality[@]}"
step smoke_loop 200 $PY -m pirtune.train stage=loop run_dir="$work/smoke/loop" \
  generator_ckpt="$work/smoke/pretrain/generator.pt" experiment=paper objective=color_blue \
  estimator=$smoke_estimator logger=csv progress=false model.whole_step=$graph \
  model.channels_last=true "${smoke_scale[@]}" "${smoke_loop[@]}" "${smoke_quality[@]}"
step tune_bf16 90 $bench --tune "${iters[@]}" --json "$OUT/tune.json" "${tune_gan[@]}" \
  trainer.precision=bf16-mixed
step estimator_inception_v3 60 $PY scripts/bench/estimator_throughput.py \
  --backbone inception_v3 "${estimator[@]}"
step vgg_bank 60 $PY scripts/bench/vgg_bank.py "${vgg[@]}"
(( ${#compile_iters[@]} )) && step pretrain_bf16_graph_compiled 240 $bench "${compile_iters[@]}" --whole-step $graph \
  --channels-last --compile default --json "$OUT/pretrain.json" "${gan[@]}"

# The smoke's small files (records, reports, CSVs); the bundles stay behind.
mkdir -p "$OUT/smoke"
(cd "$work/smoke" 2>/dev/null && find . -type f -size -512k \
  \( -name '*.json' -o -name '*.csv' -o -name '*.md' -o -name '*.log' \) \
  -exec cp --parents {} "$OUT/smoke/" \;)

$PY - "$OUT" "$dry" <<'EOF'
"""Gather the steps' figures into gpu.json; targets are judged on measured figures only."""
import json
import sys
from pathlib import Path

out, dry = Path(sys.argv[1]), sys.argv[2] == "1"


def rows(name):
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else []


def last_json_line(name):
    path = out / f"{name}.out"
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("{")] if path.is_file() else []
    return json.loads(lines[-1]) if lines else None


steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
pretrain, tune = rows("pretrain.json"), rows("tune.json")
smi = out / "nvidia-smi.txt"
summary = {
    "dry_run": dry,  # true: CPU, tiny networks; none of these figures is a GPU figure
    "device": smi.read_text().strip() if smi.is_file() else "cpu",
    "steps": steps,
    "pretrain": pretrain,
    "tune": tune,
    "estimator": last_json_line("estimator_inception_v3"),
    "vgg_bank": last_json_line("vgg_bank"),
    "smoke": {s["step"]: s for s in steps if s["step"].startswith("smoke")},
}
best = max((r["lightning_it_per_s"] for r in pretrain), default=None)
best_tune = max((r["lightning_it_per_s"] for r in tune), default=None)
if not dry and best:
    summary["targets"] = {
        "lightning_pretrain_best_it_per_s": best,
        "pretrain_at_least_300": best >= 300,
        "pretrain_at_least_500": best >= 500,
        "tune_best_it_per_s": best_tune,
        "tune_at_least_200": best_tune is not None and best_tune >= 200,
        # The paper's 1.1M pre-training iterations at the best measured Lightning rate.
        "paper_pretraining_hours": round(1.1e6 / best / 3600, 2),
    }
(out / "gpu.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps({k: summary[k] for k in ("dry_run", "device")}))
for r in pretrain + tune:
    print(f"{r['module']:16} {r['precision']:10} whole_step={r['whole_step']!s:6} "
          f"captured={r['graph_captured']!s:5} channels_last={r['channels_last']!s:5} "
          f"compile={r['compile']!s:8} plain={r['plain_it_per_s']} "
          f"lightning={r['lightning_it_per_s']} it/s")
print("wrote", out / "gpu.json")
EOF
rm -rf "$work"
