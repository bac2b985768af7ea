# Session 6, 2 x H200: DeMo's training throughput on 1 GPU and on 2 GPUs (torchrun, global batch
# 64) at the benchmark's default 200 timed iterations after 30, on the session's final code.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 1 >/dev/null 2>&1
C="--root /tmp/bench --train-only --epochs 0 --hang-timeout 170 --config configs/RGBNT201/DeMo.yml SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead"
timeout 180 python3 tools/benchmark.py $C > $OUT/one-gpu.log 2>&1; echo "one rc $?"; grep '"train_\|"loader\|"memory' $OUT/one-gpu.log | cut -c1-200
timeout 190 python3 -m torch.distributed.run --standalone --nproc_per_node 2 tools/benchmark.py $C > $OUT/two-gpu.log 2>&1; echo "two rc $?"; grep '"train_\|"loader\|"memory\|DDP over' $OUT/two-gpu.log | cut -c1-200
