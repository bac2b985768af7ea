set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 1 >/dev/null 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
{ timeout 120 python3 -m pytest -q -p no:cacheprovider tests/data/test_loaders.py -k cuda 2>&1 | tail -2
  echo "== record_stream disabled (must fail):"
  timeout 120 python3 -c "
import sys, torch, pytest
torch.Tensor.record_stream = lambda self, s: None
sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/data/test_loaders.py', '-k', 'cuda']))" 2>&1 | tail -4; } > $OUT/pytest.txt
cat $OUT/pytest.txt
timeout 330 bash scripts/bench_gpu.sh $OUT/b extract > /dev/null 2>&1; cp $OUT/b/extract.log $OUT/extract.log; rm -rf $OUT/b
grep '"measure"' $OUT/extract.log
start=$(date +%s)
timeout 200 python3 train_net.py --config_file configs/RGBNT201/DeMo.yml DATASETS.ROOT_DIR /tmp/bench SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead SOLVER.MAX_EPOCHS 6 SOLVER.EVAL_PERIOD 6 SOLVER.CHECKPOINT_PERIOD 0 SOLVER.LOG_PERIOD 53 OUTPUT_DIR /tmp/tn > /dev/null 2>&1
echo "train_net rc $? process $(( $(date +%s) - start )) s"
cp /tmp/tn/log.txt $OUT/tn-log.txt; cp /tmp/tn/metrics.json $OUT/tn-metrics.json
grep "done in\|saved" $OUT/tn-log.txt | cut -c1-120
head -1 $OUT/tn-log.txt | cut -c1-20; tail -1 $OUT/tn-log.txt | cut -c1-20
