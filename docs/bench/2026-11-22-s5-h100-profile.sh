# Session 5, H100: where one GPU's batch-32 step (one rank's share of the global 64 on two GPUs)
# loses against batch 64. Compiled (default mode, no CUDA graphs: the profiler sees every
# kernel), 10 model-only steps profiled at each batch size.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 1 >/dev/null 2>&1
for b in 32 64; do
  timeout 140 python3 tools/benchmark.py --root /tmp/bench --train-only --iters 20 --warmup 10 --epochs 0 --profile 10 --hang-timeout 130 --config configs/RGBNT201/DeMo.yml SOLVER.COMPILE True SOLVER.IMS_PER_BATCH $b > $OUT/profile-b$b.log 2>&1
  grep '"train_model' $OUT/profile-b$b.log
done
