set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 1 >/dev/null 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/data/test_loaders.py -k cuda 2>&1 | tail -2
timeout 120 python3 -c "
import sys, torch, pytest
torch.Tensor.record_stream = lambda self, s: None
sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/data/test_loaders.py', '-k', 'cuda']))" 2>&1 | tail -2
C="--root /tmp/bench --train-only --iters 60 --warmup 25 --hang-timeout 170 --config configs/RGBNT201/DeMo.yml SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead"
timeout 180 python3 tools/benchmark.py $C > $OUT/one-gpu.log 2>&1; grep '"train_' $OUT/one-gpu.log
timeout 200 torchrun --standalone --nproc_per_node 2 docs/bench/ddp-s4/bench_wrap.py $C > $OUT/two-gpu.log 2>&1; grep '"train_\|"compile' $OUT/two-gpu.log
OPTIMIZE_DDP=0 timeout 200 torchrun --standalone --nproc_per_node 2 docs/bench/ddp-s4/bench_wrap.py $C > $OUT/two-gpu-nosplit.log 2>&1; grep '"train_\|"compile' $OUT/two-gpu-nosplit.log
