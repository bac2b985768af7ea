#!/usr/bin/env bash
# Train each config in each precision once per seed on the full-size synthetic RGBNT201, every
# run from one random CLIP-architecture backbone file, at the recipe's learning rates, then print
# the final model's mAP per pattern (mean +- std over seeds) and the fp16 skipped optimizer steps.
#
#   bash scripts/precision_study.sh OUT_DIR [SEED ...]                   (default seeds: 1 2 3)
#
# CONFIGS (default "DeMo DeMo_SDTPS", files of configs/RGBNT201/), AMPS (default "bf16 fp16"),
# EPOCHS (default 10), PARALLEL (runs at once, default 3), EXTRA (more KEY VALUE overrides),
# PYTHON (default python3), ROOT (data, default /tmp/bench) may be set. A run whose folder holds
# model_final.pth is kept: a rerun adds what is missing.
set -euo pipefail
out=${1:?usage: precision_study.sh OUT_DIR [SEED ...]}
shift
seeds=${*:-1 2 3}
py=${PYTHON:-python3}
root=${ROOT:-/tmp/bench}
mkdir -p "$out"
"$py" tools/make_synthetic_dataset.py "$root" --dataset RGBNT201 --scale 1  # kept if made alike
backbone="$out/random_backbone.pth"
[ -f "$backbone" ] || "$py" - "$backbone" <<'PY'
import sys, torch
from modeling.backbones import build_backbone
from config import load_config
cfg = load_config("configs/RGBNT201/DeMo.yml")
torch.manual_seed(0)
net = build_backbone(cfg)
torch.save({"model": {f"backbone.{k}": v for k, v in net.state_dict().items()}}, sys.argv[1])
PY
jobs=()
for config in ${CONFIGS:-DeMo DeMo_SDTPS}; do
  for amp in ${AMPS:-bf16 fp16}; do
    for seed in $seeds; do jobs+=("$config $amp $seed"); done
  done
done
run() {
  read -r config amp seed <<< "$1"
  local dir="$out/$config-$amp-seed$seed"
  [ -f "$dir/model_final.pth" ] && return 0
  rm -rf "$dir"
  "$py" train_net.py --config_file "configs/RGBNT201/$config.yml" DATASETS.ROOT_DIR "$root" \
    MODEL.PRETRAIN_PATH "$backbone" SOLVER.MAX_EPOCHS "${EPOCHS:-10}" SOLVER.WARMUP_EPOCHS 2 \
    SOLVER.COMPILE True SOLVER.AMP "$amp" SOLVER.SEED "$seed" SOLVER.EVAL_PERIOD 0 \
    SOLVER.CHECKPOINT_PERIOD 0 SOLVER.LOG_PERIOD 50 ${EXTRA:-} OUTPUT_DIR "$dir" \
    > "$dir.log" 2>&1 || { echo "FAILED $dir"; tail -n 20 "$dir.log"; }
}
export -f run
export out root py backbone
printf '%s\n' "${jobs[@]}" | xargs -P "${PARALLEL:-3}" -I{} bash -c 'run "$@"' _ {}
"$py" - "$out" <<'PY'
import glob, json, os, re, statistics, sys
groups = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*-seed*", "metrics.json"))):
    recs = [json.loads(x) for x in open(path)]
    ev = [r for r in recs if r.get("type") == "eval" and r.get("split") == "test"]
    if not ev:
        continue
    name = re.sub(r"-seed\d+$", "", os.path.basename(os.path.dirname(path)))
    skipped = sum(r.get("amp_skipped_steps", 0) for r in recs if r.get("type") == "epoch")
    groups.setdefault(name, []).append((ev[-1]["results"], skipped))
print("| run | seeds | p1 mAP | p2 mAP | p3 mAP | fp16 skipped steps per run |")
print("| --- | --- | --- | --- | --- | --- |")
for name, runs in groups.items():
    cells = []
    for p in "123":
        v = [r[p]["mAP"] for r, _ in runs]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        cells.append(f"{statistics.mean(v):.1f} ± {sd:.1f}")
    print(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {[s for _, s in runs]} |")
PY
