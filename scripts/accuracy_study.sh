#!/usr/bin/env bash
# The accuracy studies of docs/ACCURACY.md on its study protocol: the framework's synthetic RGBNT201
# at --hardness 1, every run from one backbone trained by `accuracy_guard.sh OUT pretrain`, the
# guard's schedule at 10 epochs, final models, through tools/compare.py.
#
#   bash scripts/accuracy_study.sh OUT_DIR [STUDY ...]
#
# STUDY (default: all of them, in this order):
#   headline      DeMo vs DeMo_SDTPS, seeds 1-5, bf16
#   dropout       DeMo and DeMo_SDTPS with and without INPUT.MODALITY_DROPOUT 0.5, seeds 1-3, bf16
#   anytoany      tools/eval_suite.py --any-to-any on every final model of `dropout` (in the
#                 background, beside the next studies; its log: OUT_DIR/reports/anytoany.log)
#   fp16          DeMo and DeMo_SDTPS in fp16 (SOLVER.AMP fp16), seeds 1-3
#   options       DeMo_SDTPS and its variants of configs/RGBNT201/study/ (each Gumbel mode,
#                 SDTPS_SCORE_GRAD, loss weight 2), seeds 1-3, bf16
#   timing        3 short DeMo runs one after another, the same 3 at once, then the same 3 in two
#                 processes and in one (train_net.py --seeds): wall times, each run's fixed cost
#   options-fp16  the same as options in fp16, without loss weight 2
#   anytoany-time tools/eval_suite.py --any-to-any on one model of `headline` with the GPU to
#                 itself: the time of the 7 extractions and of the 49 x 3 rankings
#   headline-time `headline` again in fresh folders with a warm cache, as tools/compare.py runs it
#                 and one run after another: the two wall times (not in the default list)
#
# Every study is resumable: runs that finished are reused (tools/compare.py). Runs live in
# OUT_DIR/bf16 and OUT_DIR/fp16, each study's report in OUT_DIR/reports/<study>/. ROOT (data,
# default /tmp/bench-h1), BACKBONE (default: OUT_DIR/guard/pretrain/model_final.pth, trained if
# missing), PARALLEL (runs at once, default 3), EXTRA (more KEY VALUE overrides for every run) and
# PYTHON (default python3) may be set.
set -euo pipefail
out=${1:?usage: accuracy_study.sh OUT_DIR [STUDY ...]}
shift
studies=${*:-headline dropout anytoany fp16 options timing options-fp16 anytoany-time}
py=${PYTHON:-python3}
root=${ROOT:-/tmp/bench-h1}
backbone=${BACKBONE:-$out/guard/pretrain/model_final.pth}
mkdir -p "$out/reports"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$out/inductor_cache}
stamp() { echo "[$(date +%T)] $*"; }

"$py" tools/make_synthetic_dataset.py "$root" --dataset RGBNT201 --scale 1 --hardness 1  # kept if made alike
if [ ! -f "$backbone" ]; then
  stamp "pretraining the study backbone"
  bash scripts/accuracy_guard.sh "$out/guard" pretrain
fi
protocol=(DATASETS.ROOT_DIR "$root" MODEL.PRETRAIN_PATH "$backbone" SOLVER.MAX_EPOCHS 10
          SOLVER.WARMUP_EPOCHS 2 SOLVER.BACKBONE_LR 1e-4 SOLVER.COMPILE True
          SOLVER.COMPILE_MODE reduce-overhead SOLVER.CHECKPOINT_PERIOD 0 SOLVER.EVAL_PERIOD 10
          ${EXTRA:-})
base=configs/RGBNT201

# compare REPORT FOLDER [--config C ...] --seeds S ... [KEY VALUE ...]
compare() {
  local report=$1 folder=$2
  shift 2
  stamp "study $report ($(df -h --output=avail "$out" | tail -1 | tr -d ' ') free on the disk)"
  local start=$SECONDS status=0
  # A failed run fails its study, not the ones after it (its report names the run and its log).
  "$py" tools/compare.py --out "$out/$folder" --parallel "${PARALLEL:-3}" "$@" "${protocol[@]}" ||
    status=$?
  mkdir -p "$out/reports/$report"
  cp "$out/$folder"/compare.{md,json} "$out/reports/$report/" 2>/dev/null || true
  cp "$out/$folder"/compare_*.png "$out/reports/$report/" 2>/dev/null || true
  stamp "study $report: $((SECONDS - start)) s$([ $status = 0 ] || echo ", FAILED (status $status)")"
}

configs() { for c in "$@"; do printf -- '--config\n%s\n' "$c"; done; }
options_configs() {
  configs "$base/DeMo_SDTPS.yml"
  for v in "$@"; do configs "$base/study/DeMo_SDTPS_$v.yml"; done
}

any_to_any() {
  local jobs=()
  for c in DeMo DeMo_dropout DeMo_SDTPS DeMo_SDTPS_dropout; do
    for s in 1 2 3; do jobs+=("$out/bf16/RGBNT201-$c/seed_$s"); done
  done
  stamp "any-to-any of ${#jobs[@]} models"
  printf '%s\n' "${jobs[@]}" | xargs -P 2 -I{} sh -c \
    '"$0" tools/eval_suite.py --config_file "$1/config.yaml" TEST.WEIGHT "$1/model_final.pth" \
       DATASETS.ROOT_DIR "$2" --any-to-any --out "$1/any_to_any" > "$1/any_to_any.log" 2>&1 ||
       { echo "FAILED $1"; tail -n 20 "$1/any_to_any.log"; }' "$py" {} "$root"
  "$py" - "$out/bf16" "$out/reports/anytoany" <<'PY'
import glob, json, os, statistics, sys
rows, out = {}, sys.argv[2]
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*", "seed_*", "any_to_any", "any_to_any.json"))):
    config = os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(path))))
    rows.setdefault(config, []).append(json.load(open(path)))
os.makedirs(out, exist_ok=True)
json.dump(rows, open(os.path.join(out, "any_to_any_runs.json"), "w"), indent=1)
print(f"any-to-any runs found: { {k: len(v) for k, v in rows.items()} }")
PY
  stamp "any-to-any done"
}

timing() {
  local dir=$out/timing seq=() start
  mkdir -p "$dir"
  stamp "timing: 3 DeMo runs of 4 epochs one after another"
  start=$SECONDS
  for s in 11 12 13; do
    rm -rf "$dir/seq/seed_$s"
    local t0=$SECONDS
    "$py" train_net.py --config_file "$base/DeMo.yml" "${protocol[@]}" SOLVER.MAX_EPOCHS 4 \
      SOLVER.EVAL_PERIOD 4 SOLVER.SEED "$s" OUTPUT_DIR "$dir/seq/seed_$s" > "$dir/seq_$s.log" 2>&1
    seq+=("$((SECONDS - t0))")
  done
  stamp "timing: one after another ${seq[*]} s, total $((SECONDS - start)) s"
  rm -rf "$dir/par"
  start=$SECONDS
  "$py" tools/compare.py --out "$dir/par" --parallel 3 --config "$base/DeMo.yml" --seeds 11 12 13 \
    "${protocol[@]}" SOLVER.MAX_EPOCHS 4 SOLVER.EVAL_PERIOD 4 > "$dir/par.log" 2>&1
  stamp "timing: at once (tools/compare.py --parallel 3) total $((SECONDS - start)) s"
  for k in 2 1; do  # the same 3 runs in k processes (train_net.py --seeds), k at once
    rm -rf "$dir/procs$k"
    start=$SECONDS
    "$py" tools/compare.py --out "$dir/procs$k" --parallel $k --config "$base/DeMo.yml" \
      --seeds 11 12 13 "${protocol[@]}" SOLVER.MAX_EPOCHS 4 SOLVER.EVAL_PERIOD 4 > "$dir/procs$k.log" 2>&1
    stamp "timing: in $k process(es) (tools/compare.py --parallel $k) total $((SECONDS - start)) s"
  done
  # Each run's fixed cost: its end less its start (the process start; for a later run of a
  # process, its first log line) less its epochs at the steady pace.
  "$py" - "$dir"/seq/seed_* "$dir"/par/*/seed_* "$dir"/procs*/*/seed_* <<'PY'
import json, re, statistics, sys
for run in sys.argv[1:]:
    log = open(f"{run}/log.txt").read()
    first, setup, end = (float(re.findall(p, log)[-1]) for p in (
        r"\] ([0-9.]+) s after the process started \(", r"\] set up ([0-9.]+) s after",
        r"\] run done ([0-9.]+) s after"))
    begin = first if " in this process: " in log else 0.0
    epochs = [r["seconds"] for r in map(json.loads, open(f"{run}/metrics.json")) if r["type"] == "epoch"]
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
    print(f"{run}: started at {begin:.1f} s, first log line at {first:.1f} s, set up at "
          f"{setup:.1f} s, end at {end:.1f} s, epochs {sum(epochs):.1f} s (steady {steady:.2f} "
          f"s), fixed cost {end - begin - steady * len(epochs):.1f} s")
PY
}

# headline_time: `headline` twice with a warm compile cache, as the tool runs it by default and
# one run after another (each in a process of its own), in fresh folders: the two wall times.
headline_time() {
  local t=$out/headline-time two
  two=$(configs "$base/DeMo.yml" "$base/DeMo_SDTPS.yml")
  rm -rf "$t" && mkdir -p "$t"
  stamp "headline-time: warming the compile cache (one 1-epoch run of each config, not timed)"
  "$py" tools/compare.py --out "$t/warm" $two --seeds 0 "${protocol[@]}" SOLVER.MAX_EPOCHS 1 \
    SOLVER.EVAL_PERIOD 1 > "$t/warm.log" 2>&1
  compare headline-time-shared headline-time/shared $two --seeds 1 2 3 4 5
  compare headline-time-one-by-one headline-time/one-by-one $two --seeds 1 2 3 4 5 \
    --process-per-run --parallel 1
  find "$t" -name '*.pth' -delete  # 1.2 GB a run; the reports are what the study is for
}

for study in $studies; do
  case $study in
    headline) compare headline bf16 $(configs "$base/DeMo.yml" "$base/DeMo_SDTPS.yml") --seeds 1 2 3 4 5 ;;
    dropout) compare dropout bf16 $(configs "$base/DeMo.yml" "$base/study/DeMo_dropout.yml" \
               "$base/DeMo_SDTPS.yml" "$base/study/DeMo_SDTPS_dropout.yml") --seeds 1 2 3 ;;
    anytoany) any_to_any > "$out/reports/anytoany.log" 2>&1 & ;;
    fp16) compare fp16 fp16 $(configs "$base/DeMo.yml" "$base/DeMo_SDTPS.yml") --seeds 1 2 3 SOLVER.AMP fp16 ;;
    options) compare options bf16 $(options_configs gumbel_ste gumbel_sample gumbel_soft score_grad loss2) \
               --seeds 1 2 3 ;;
    options-fp16) compare options-fp16 fp16 $(options_configs gumbel_ste gumbel_sample gumbel_soft score_grad) \
                    --seeds 1 2 3 SOLVER.AMP fp16 ;;
    timing) timing 2>&1 | tee "$out/reports/timing.txt" ;;  # kept: the wall times and fixed costs
    headline-time) headline_time 2>&1 | tee "$out/reports/headline-time.txt" ;;
    anytoany-time)
      wait  # nothing else on the GPU
      run=$out/bf16/RGBNT201-DeMo_SDTPS/seed_1
      "$py" tools/eval_suite.py --config_file "$run/config.yaml" TEST.WEIGHT "$run/model_final.pth" \
        DATASETS.ROOT_DIR "$root" --any-to-any --out "$out/reports/anytoany-time" \
        > "$out/reports/anytoany-time.log" 2>&1
      grep -E "settings from" "$out/reports/anytoany-time.log" || true ;;
    *) echo "unknown study $study (see the head of this script)" >&2; exit 2 ;;
  esac
done
wait  # the any-to-any evaluations
stamp "all done: $studies"
