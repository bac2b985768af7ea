# Session 7, H100, accuracy guard part A: pretrain the backbone (optimised path, 16 epochs, default
# synthetic set), then the unoptimised path (fp32 eager) from it on the hardness-1.0 set, seeds 1
# and 2, 8 epochs. Part B (same lease, same pretrained file) runs the optimised paths.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
g=/tmp/guard-s7
[ -f $g/pretrain/model_final.pth ] || timeout 220 bash scripts/accuracy_guard.sh $g pretrain | head -2
md5sum $g/pretrain/model_final.pth
INIT=$g/pretrain/model_final.pth HARDNESS=1.0 EPOCHS=8 EVAL_PERIOD=4 timeout 440 \
  bash scripts/accuracy_guard.sh $g fp32 1 2
