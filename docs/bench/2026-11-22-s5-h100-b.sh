# Session 5, H100 call B: training throughput of DeMo with the ring loader (benchmark), then
# train_net.py for 6 epochs: whole-epoch times, an evaluation, and how long the process takes to
# exit after its last log line.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 1 >/dev/null 2>&1
timeout 230 python3 tools/benchmark.py --root /tmp/bench --train-only --iters 150 --warmup 40 --epochs 4 --hang-timeout 220 --config configs/RGBNT201/DeMo.yml SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead > $OUT/train.log 2>&1; echo "bench rc $?"
grep '"measure"' $OUT/train.log
start=$(date +%s)
timeout 190 python3 train_net.py --config_file configs/RGBNT201/DeMo.yml DATASETS.ROOT_DIR /tmp/bench SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead SOLVER.MAX_EPOCHS 6 SOLVER.EVAL_PERIOD 3 SOLVER.CHECKPOINT_PERIOD 0 SOLVER.LOG_PERIOD 53 OUTPUT_DIR /tmp/tn > /dev/null 2>&1
echo "train_net rc $? process $(( $(date +%s) - start )) s, ended $(date +%H:%M:%S)"
cp /tmp/tn/log.txt $OUT/tn-log.txt; cp /tmp/tn/metrics.json $OUT/tn-metrics.json
grep "done in\|saved\|features" $OUT/tn-log.txt | cut -c1-140
head -1 $OUT/tn-log.txt | cut -c1-20; tail -1 $OUT/tn-log.txt | cut -c1-20
