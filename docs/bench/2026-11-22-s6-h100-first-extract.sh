# Session 6, H100: is the slow first extraction a cost of each process or of the fresh machine?
# The same extraction benchmark twice, one process after the other, on one lease.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 1 >/dev/null 2>&1
grep -E "MemTotal|MemFree" /proc/meminfo
for run in 1 2; do
  timeout 200 python3 tools/benchmark.py --root /tmp/bench --measures extract --hang-timeout 190 --config configs/RGBNT201/DeMo.yml SOLVER.COMPILE True SOLVER.COMPILE_MODE reduce-overhead > $OUT/run$run.log 2>&1; echo "run $run rc $?"
  grep '"extract' $OUT/run$run.log | cut -c1-160; grep -E "MemTotal|MemFree" /proc/meminfo
done
