# Session 6, 2 x H200, second lease: traces of the 2-GPU step as shipped and with one compiled
# graph; DDP without the buffer broadcast; 50 and 200 MB buckets. Model only.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 0.2 >/dev/null 2>&1
P="docs/bench/2026-11-22-s6-ddp-probe.py --root /tmp/bench"
D="python3 -m torch.distributed.run --standalone --nproc_per_node 2 $P"
run() { name=$1; shift; PROBE_OUT=$OUT/$name timeout 130 "$@" > $OUT/$name.log 2>&1; echo "rc $? $name"; grep '"variant' $OUT/$name.log; rm -f $OUT/$name/events.* $OUT/$name/log.txt; }
run two $D
OPTIMIZE_DDP=0 run two-noopt $D
BROADCAST=0 TRACE=0 run two-nobcast $D
TRACE=0 run two-b50 $D SOLVER.DDP_BUCKET_MB 50
TRACE=0 run two-b200 $D SOLVER.DDP_BUCKET_MB 200
