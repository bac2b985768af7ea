# Session 6, 2 x H200: where DDP's step time goes. 1 GPU at 64 and 32, 2 GPUs (32 each) as shipped,
# with one compiled graph (OPTIMIZE_DDP=0), and with an AVG all-reduce hook. Model only.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 0.2 >/dev/null 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
P="docs/bench/2026-11-22-s6-ddp-probe.py --root /tmp/bench"
run() { name=$1; shift; PROBE_OUT=$OUT/$name timeout 130 "$@" > $OUT/$name.log 2>&1; echo "rc $? $name"; grep '"variant' $OUT/$name.log; }
run one64 python3 $P
run two python3 -m torch.distributed.run --standalone --nproc_per_node 2 $P
run one32 python3 $P SOLVER.IMS_PER_BATCH 32
OPTIMIZE_DDP=0 run two-noopt python3 -m torch.distributed.run --standalone --nproc_per_node 2 $P
HOOK=avg run two-avg python3 -m torch.distributed.run --standalone --nproc_per_node 2 $P
