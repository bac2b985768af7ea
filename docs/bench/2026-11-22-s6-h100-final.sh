# Session 6, H100: the GPU-only tests, then the whole benchmark (training, extraction, metrics) for
# both configs on the session's final code.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 1 >/dev/null 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/data/test_loaders.py tests/engine/test_evaluator.py tests/utils/test_checkpoint.py > $OUT/pytest.txt 2>&1; echo "pytest rc $?"; tail -1 $OUT/pytest.txt
timeout 420 python3 tools/benchmark.py --root /tmp/bench --iters 150 --warmup 40 --epochs 0 --hang-timeout 410 --config configs/RGBNT201/DeMo.yml --config configs/RGBNT201/DeMo_SDTPS.yml SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead > $OUT/bench.log 2>&1; echo "bench rc $?"
grep '"measure"' $OUT/bench.log | cut -c1-230
