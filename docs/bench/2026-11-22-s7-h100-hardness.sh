# Session 7, H100: how hard must the synthetic set be for the accuracy guard not to saturate?
# The optimised path (bf16, compiled), seed 1, 16 epochs, pattern-3 mAP every 4 epochs, at
# three hardness levels of tools/make_synthetic_dataset.py.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
for h in ${LEVELS:-1.0 0.75 0.5}; do
  HARDNESS=$h EPOCHS=16 EVAL_PERIOD=4 timeout 250 bash scripts/accuracy_guard.sh /tmp/guard-h$h optimised 1 2>&1 | tail -4
done
tar czf $OUT/hardness-runs.tgz /tmp/guard-h*/*.log /tmp/guard-h*/*/metrics.json 2>/dev/null
