set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 1 >/dev/null 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
C="--root /tmp/bench --train-only --iters 60 --warmup 25 --hang-timeout 170 --config configs/RGBNT201/DeMo.yml SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead"
timeout 180 python3 tools/benchmark.py $C > $OUT/one-gpu.log 2>&1; grep '"train_' $OUT/one-gpu.log
NCCL_MAX_NCHANNELS=4 timeout 200 torchrun --standalone --nproc_per_node 2 tools/benchmark.py $C SOLVER.DDP_BUCKET_MB 25 > $OUT/two-gpu-ch4-b25.log 2>&1; grep '"train_' $OUT/two-gpu-ch4-b25.log
NCCL_MAX_NCHANNELS=8 timeout 200 torchrun --standalone --nproc_per_node 2 tools/benchmark.py $C SOLVER.DDP_BUCKET_MB 25 > $OUT/two-gpu-ch8-b25.log 2>&1; grep '"train_' $OUT/two-gpu-ch8-b25.log
