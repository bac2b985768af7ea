# Session 7, 2 x H200: NCCL's CTA policy (NCCL_CTA_POLICY=1, "efficiency": fewest CTAs for a
# decent bandwidth, meant for compute-communication overlap; NCCL 2.27+). Session 6 found 0.75 ms
# of a 2-GPU step lost to kernels slowed beside NCCL's all-reduce. Model only, s6 probe.
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
python3 tools/make_synthetic_dataset.py /tmp/bench --dataset RGBNT201 --scale 0.2 >/dev/null 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'nccl', torch.cuda.nccl.version())"
P="docs/bench/2026-11-22-s6-ddp-probe.py --root /tmp/bench"
D="python3 -m torch.distributed.run --standalone --nproc_per_node 2 $P"
run() { name=$1; shift; PROBE_OUT=$OUT/$name TRACE=0 timeout 130 "$@" > $OUT/$name.log 2>&1; echo "rc $? $name"; grep '"variant' $OUT/$name.log | cut -c1-200; rm -rf $OUT/$name; }
run one64 python3 $P
run two $D
NCCL_CTA_POLICY=1 NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,ENV,TUNING run two-cta1 $D
grep -i "cta\|channels" $OUT/two-cta1.log | grep -v Broadcast | head -12
NCCL_CTA_POLICY=1 run two-cta1-b25 $D SOLVER.DDP_BUCKET_MB 25
