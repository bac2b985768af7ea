#!/usr/bin/env bash
# The accuracy guard: does the fast training path keep the accuracy of the plain one? Train
# RGBNT201 DeMo on the full-size synthetic set for a fixed schedule of EPOCHS epochs (default 8),
# either on the unoptimised path (fp32, eager) or on the optimised one (bf16 autocast,
# torch.compile with CUDA graphs; `fp16`: the same with fp16 autocast and a GradScaler, DeMo's own
# AMP), once per seed; then print the pattern-1/2/3 mAP of every run found under OUT_DIR and the
# mean per path (docs/PERFORMANCE.md holds the latest result).
#
#   bash scripts/accuracy_guard.sh OUT_DIR fp32|optimised|fp16 [SEED ...]    (default seeds: 1 2)
#   bash scripts/accuracy_guard.sh OUT_DIR pretrain    # OUT_DIR/pretrain/model_final.pth
#   bash scripts/accuracy_guard.sh OUT_DIR summary
#
# From random weights (the default) the backbone learns in bursts whose timing varies from run to
# run, and by 16 epochs the set is solved: `pretrain` trains the optimised path 16 epochs on the
# default set once, and INIT=OUT_DIR/pretrain/model_final.pth starts every compared run from that
# backbone (as CLIP weights start a real run), on a harder set (HARDNESS, data/synthetic.py).
# The schedule: backbone LR 1e-4 (the recipe's 5e-6 is for CLIP weights), 2 warm-up epochs, the
# recipe otherwise.
# EPOCHS (default 8; pretrain: 16), EVAL_PERIOD (default EPOCHS), HARDNESS (default 0), INIT
# (default none), PYTHON (default python3), BENCH_ROOT (default /tmp/bench, or /tmp/bench-hHARDNESS;
# one set made with other parameters, pretrain's hardness 0 included, is refused),
# CONFIG (default configs/RGBNT201/DeMo.yml) may be set.
set -euo pipefail
usage="usage: accuracy_guard.sh OUT_DIR fp32|optimised|fp16|pretrain|summary [SEED ...]"
out=${1:?$usage}
path=${2:?$usage}
shift 2
seeds=${*:-1 2}
py=${PYTHON:-python3}
hardness=${HARDNESS:-0}
epochs=${EPOCHS:-8}
init=()
[ -z "${INIT:-}" ] || init=(MODEL.PRETRAIN_PATH "$INIT")
if [ "$path" = pretrain ]; then hardness=0 epochs=${EPOCHS:-16} seeds=0 init=(); fi
if [ "$hardness" = 0 ]; then root=${BENCH_ROOT:-/tmp/bench}; else root=${BENCH_ROOT:-/tmp/bench-h$hardness}; fi
config=${CONFIG:-configs/RGBNT201/DeMo.yml}
schedule=(SOLVER.MAX_EPOCHS "$epochs" SOLVER.WARMUP_EPOCHS 2 SOLVER.BACKBONE_LR 1e-4
          SOLVER.EVAL_PERIOD "${EVAL_PERIOD:-$epochs}" SOLVER.CHECKPOINT_PERIOD 0 SOLVER.LOG_PERIOD 53
          DATASETS.ROOT_DIR "$root")
case $path in
  fp32) opts=(SOLVER.AMP off) ;;
  optimised|pretrain) opts=(SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead) ;;
  fp16) opts=(SOLVER.AMP fp16 SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead) ;;
  summary) opts=() ;;
  *) echo "unknown path $path: use fp32, optimised, fp16, pretrain or summary" >&2; exit 2 ;;
esac
mkdir -p "$out"
if [ "$path" != summary ]; then
  "$py" tools/make_synthetic_dataset.py "$root" --dataset RGBNT201 --scale 1 --hardness "$hardness"  # kept if made alike
  for seed in $seeds; do
    run="$out/$path-seed$seed"
    [ "$path" != pretrain ] || run="$out/pretrain"
    rm -rf "$run"  # this run again: train_net.py refuses a folder that holds a run
    echo "== $run"
    start=$(date +%s)
    "$py" train_net.py --config_file "$config" "${schedule[@]}" "${opts[@]}" ${init[@]+"${init[@]}"} \
      SOLVER.SEED "$seed" OUTPUT_DIR "$run" > "$run.log" 2>&1 || { tail -n 30 "$run.log"; exit 1; }
    echo "$(( $(date +%s) - start )) s"
  done
fi
"$py" - "$out" <<'PY'
import glob, json, os, re, statistics, sys

runs, curves = {}, {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*", "metrics.json"))):  # every run, pretrain too
    evals = [r for r in map(json.loads, open(path)) if r.get("type") == "eval"]
    if evals:
        name = os.path.basename(os.path.dirname(path))
        runs[name] = evals[-1]["results"]
        curves[name] = " ".join(f"{r['epoch']}:{r['results']['3']['mAP']:.1f}" for r in evals)
print("| run | pattern 1 mAP | pattern 2 mAP | pattern 3 mAP | pattern 3 by epoch |")
print("| --- | --- | --- | --- | --- |")
for name, res in runs.items():
    print(f"| {name} | " + " | ".join(f"{res[p]['mAP']:.2f}" for p in "123") + f" | {curves[name]} |")
for kind in ("fp32", "optimised", "fp16"):
    maps = [res["3"]["mAP"] for name, res in runs.items() if re.fullmatch(kind + r"-seed\d+", name)]
    if maps:
        print(f"{kind}: mean pattern-3 mAP {statistics.mean(maps):.2f} over {len(maps)} seeds")
PY
