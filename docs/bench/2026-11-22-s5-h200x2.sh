# Session 5, 2 x H200: the GPU loader test (ring page-locked as portable memory), then DeMo's
# training throughput on 1 GPU and on 2 GPUs (torchrun, global batch 64) with the ring loader.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 1 >/dev/null 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/data/test_loaders.py -k "cuda or ring" 2>&1 | tail -1
C="--root /tmp/bench --train-only --iters 60 --warmup 25 --epochs 0 --hang-timeout 125 --config configs/RGBNT201/DeMo.yml SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead"
timeout 130 python3 tools/benchmark.py $C > $OUT/one-gpu.log 2>&1; grep '"train_\|"loader' $OUT/one-gpu.log
timeout 140 torchrun --standalone --nproc_per_node 2 tools/benchmark.py $C > $OUT/two-gpu.log 2>&1; grep '"train_\|"loader' $OUT/two-gpu.log
