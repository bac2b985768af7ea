# Session 7, H100, accuracy guard part B: the optimised paths (bf16 and fp16, compiled) from part
# A's pretrained backbone, same set and schedule; then training speed of bf16 against fp16.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
g=/tmp/guard-s7
[ -f $g/pretrain/model_final.pth ] || { echo "part A's pretrained backbone is gone (a new machine)"; exit 3; }
md5sum $g/pretrain/model_final.pth
for p in optimised fp16; do
  INIT=$g/pretrain/model_final.pth HARDNESS=1.0 EPOCHS=8 EVAL_PERIOD=4 timeout 200 \
    bash scripts/accuracy_guard.sh $g $p 1 2 | grep '^=\|^[0-9]* s$'
done
bash scripts/accuracy_guard.sh $g summary
tar czf $OUT/guard-s7.tgz $g/*.log $g/*/metrics.json $g/pretrain/log.txt 2>/dev/null
for amp in bf16 fp16; do
  timeout 170 python3 tools/benchmark.py --root /tmp/bench --train-only --epochs 0 --hang-timeout 165 \
    --config configs/RGBNT201/DeMo.yml SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead \
    SOLVER.AMP $amp > $OUT/train-$amp.log 2>&1; echo "bench $amp rc $?"
  grep '"measure"' $OUT/train-$amp.log | cut -c1-200
done
