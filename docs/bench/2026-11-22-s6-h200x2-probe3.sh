# Session 6, 2 x H200, third lease: NCCL's protocol. The 100 MB all-reduces ran at 229 GB/s in
# kernels named RING_LL (LL moves half its bytes as flags); Simple and LL128 instead. Model only.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 0.2 >/dev/null 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'nccl', torch.cuda.nccl.version())"
P="docs/bench/2026-11-22-s6-ddp-probe.py --root /tmp/bench"
D="python3 -m torch.distributed.run --standalone --nproc_per_node 2 $P"
run() { name=$1; shift; PROBE_OUT=$OUT/$name timeout 130 "$@" > $OUT/$name.log 2>&1; echo "rc $? $name"; grep '"variant' $OUT/$name.log; rm -f $OUT/$name/events.* $OUT/$name/log.txt; }
NCCL_PROTO=Simple NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,TUNING run two-simple $D
grep -i "proto\|algo\|channels\|NVLS\|P2P" $OUT/two-simple.log | grep -v Broadcast | head -20
NCCL_PROTO=LL128 TRACE=0 run two-ll128 $D
NCCL_PROTO=Simple TRACE=0 run two-simple-b25 $D SOLVER.DDP_BUCKET_MB 25
NCCL_PROTO=Simple NCCL_MAX_NCHANNELS=8 TRACE=0 run two-simple-ch8 $D
