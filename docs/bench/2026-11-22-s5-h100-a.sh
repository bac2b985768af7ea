# Session 5, H100 call A: the loader tests on the GPU (and that the slow-copy test fails when the
# copies are not waited for), then the extraction benchmark of both configs.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 1 >/dev/null 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
{ timeout 150 python3 -m pytest -q -p no:cacheprovider tests/data/test_loaders.py tests/engine/test_evaluator.py tests/utils/test_checkpoint.py 2>&1 | tail -2
  echo "== copies out of the ring not waited for (must fail):"
  timeout 120 python3 -c "
import sys, pytest
import data.build as b
b.DeviceLoader._wait_copies = lambda self, keep: self._copies.clear()
sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/data/test_loaders.py', '-k', 'cuda']))" 2>&1 | tail -4; } > $OUT/pytest.txt
cat $OUT/pytest.txt
timeout 360 bash scripts/bench_gpu.sh $OUT/b extract > /dev/null 2>&1; echo "bench rc $?"; cp $OUT/b/extract.log $OUT/extract.log; rm -rf $OUT/b
grep '"measure"' $OUT/extract.log
