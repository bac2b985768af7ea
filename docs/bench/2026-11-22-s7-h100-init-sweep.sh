# Session 7, H100: the accuracy guard from a trained backbone. Pretrain the optimised path 16 epochs
# on the default synthetic set, then train on harder sets from that backbone (optimised path,
# 8 epochs, pattern-3 mAP every 2 epochs, seeds 1 and 2) to find a level that does not saturate.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
g=/tmp/guard-init
timeout 200 bash scripts/accuracy_guard.sh $g pretrain | tail -3
for h in ${LEVELS:-0.75 1.0}; do
  INIT=$g/pretrain/model_final.pth HARDNESS=$h EPOCHS=8 EVAL_PERIOD=2 timeout 200 \
    bash scripts/accuracy_guard.sh $g-h$h optimised 1 2 | tail -5
done
tar czf $OUT/init-sweep.tgz $g*/*.log $g*/*/metrics.json 2>/dev/null
