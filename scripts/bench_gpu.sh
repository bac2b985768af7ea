#!/usr/bin/env bash
# The GPU measurements behind docs/PERFORMANCE.md, run from the repository root on a GPU host.
#
#   bash scripts/bench_gpu.sh OUT_DIR [attention] [train] [extract] [pipelines]  (default: the first three)
#
# attention: forward + backward of the backbone's attention per SDPA backend.
# train:     training throughput of DeMo and DeMo_SDTPS (steps with data, model only, whole epochs of
#            Trainer.train() with checkpoints), compiled with CUDA graphs, with
#            MODEL.SDPA_BACKEND $SDPA_BACKEND (default auto); TORCH_LOGS=perf_hints: the log says
#            why a graph would run without CUDA graphs.
# extract:   feature extraction (JPEG files and decoded tensors) and the metric time.
# pipelines: DeMo's training with data and its extractions through DATALOADER.PIPELINE ring, then
#            plain, in one call (the two data paths side by side; peak memory of each).
# Logs: OUT_DIR/<phase>*.log. PYTHON (default python3), BENCH_ROOT (default /tmp/bench).
set -euo pipefail
out=${1:?usage: bench_gpu.sh OUT_DIR [attention] [train] [extract]}
shift
phases=${*:-attention train extract}
py=${PYTHON:-python3}
root=${BENCH_ROOT:-/tmp/bench}
backend=${SDPA_BACKEND:-auto}
compiled=(SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead)
mkdir -p "$out"
"$py" tools/make_synthetic_dataset.py "$root" --dataset RGBNT201 --scale 1  # kept if made alike
bench() {  # bench LOG_NAME ARGS...: one benchmark run, its output kept in OUT_DIR
  local name=$1
  shift
  echo "== $name: $*"
  "$py" tools/benchmark.py --root "$root" "$@" 2>&1 | tee "$out/$name.log"
}
for phase in $phases; do
  case $phase in
    attention)
      bench attention --measures attention --config configs/RGBNT201/DeMo.yml --hang-timeout 200
      ;;
    train)
      TORCH_LOGS=perf_hints bench train --train-only --iters 150 --warmup 40 --hang-timeout 420 \
        --config configs/RGBNT201/DeMo.yml --config configs/RGBNT201/DeMo_SDTPS.yml \
        "${compiled[@]}" MODEL.SDPA_BACKEND "$backend"
      ;;
    extract)
      bench extract --measures extract metrics --hang-timeout 300 \
        --config configs/RGBNT201/DeMo.yml --config configs/RGBNT201/DeMo_SDTPS.yml \
        "${compiled[@]}" MODEL.SDPA_BACKEND "$backend" ;;
    pipelines)
      bench pipelines --measures train extract --iters 150 --warmup 40 --epochs 0 --hang-timeout 500 \
        --pipeline ring --pipeline plain --config configs/RGBNT201/DeMo.yml "${compiled[@]}" ;;
    *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
