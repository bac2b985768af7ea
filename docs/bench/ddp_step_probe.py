"""Where a DDP training step's time goes (model only, one fixed batch on the GPU).

    [torchrun --standalone --nproc_per_node 2] python3 docs/bench/ddp_step_probe.py \
        --root /tmp/bench --out $OUT/NAME [KEY VALUE ...]

Prints per-step GPU time of forward / backward (with DDP's exposed all-reduce) / optimizer step
from CUDA events on the compute stream, the CPU time a step takes to issue, model-only
triplets/s, and writes a gzipped Chrome trace of 6 steps from rank 0.
Variants through the environment: OPTIMIZE_DDP=0 (one compiled graph, no split at buckets),
HOOK=avg (all-reduce with ReduceOp.AVG instead of DDP's division then sum), BROADCAST=0 (no
buffer broadcast before each forward), TRACE=0 (no trace).
"""

import argparse
import gzip
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402
import torch._dynamo  # noqa: E402
import torch.distributed as dist  # noqa: E402

from config import load_config  # noqa: E402
from data import build_dataset, build_train_loader  # noqa: E402
from engine import Trainer  # noqa: E402
from engine.defaults import setup
from engine.precision import autocast  # noqa: E402
from modeling import build_model  # noqa: E402
from utils import comm  # noqa: E402

torch._dynamo.config.optimize_ddp = os.environ.get("OPTIMIZE_DDP", "1") == "1"
if os.environ.get("BROADCAST") == "0":  # DDP without the forward's buffer broadcast
    import functools

    import engine.trainer

    engine.trainer.DistributedDataParallel = functools.partial(
        engine.trainer.DistributedDataParallel, broadcast_buffers=False
    )


def avg_hook(state, bucket):
    work = dist.all_reduce(bucket.buffer(), op=dist.ReduceOp.AVG, async_op=True)
    return work.get_future().then(lambda f: f.value()[0])


def main(a):
    cfg = load_config(
        a.config,
        [
            "DATASETS.ROOT_DIR",
            a.root,
            "OUTPUT_DIR",
            a.out,
            "DATALOADER.NUM_WORKERS",
            2,
            "SOLVER.COMPILE",
            True,
            "SOLVER.COMPILE_MODE",
            "reduce-overhead",
            *a.opts,
        ],
    )
    device = setup(cfg)
    splits = build_dataset(cfg)
    model = build_model(cfg, splits.num_train_pids, splits.num_cameras).to(device)
    tr = Trainer(cfg, model, build_train_loader(cfg, splits.train, device=device))
    if os.environ.get("HOOK") == "avg" and comm.get_world_size() > 1:
        getattr(tr.train_model, "_orig_mod", tr.train_model).register_comm_hook(None, avg_hook)
    b = next(iter(tr.loader))
    batch = {
        "images": {m: t.to(device) for m, t in b["images"].items()},
        "pids": b["pids"].to(device),
        "camids": b["camids"].to(device),
    }
    tr.loader.close()
    per_rank = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()

    def step(ev=None, cpu=None):
        torch.compiler.cudagraph_mark_step_begin()
        marks = []

        def mark():
            if ev is not None:
                e = torch.cuda.Event(enable_timing=True)
                e.record()
                marks.append(e)
            if cpu is not None:
                cpu.append(time.perf_counter())

        mark()
        with autocast(tr.device, tr.amp_dtype):
            out = tr.train_model(batch)
        total = sum(v for k, v in out.items() if k.startswith("loss_"))
        mark()
        tr.optimizer.zero_grad(set_to_none=True)
        total.backward()
        mark()
        tr.optimizer.step()
        mark()
        if ev is not None:
            ev.append(marks)

    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(30 if cuda else 2):
        step()
    sync()
    n = 40 if cuda else 3
    t = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    tps = n * per_rank * comm.get_world_size() / (time.perf_counter() - t)
    ev, cpu = [], []
    for _ in range(n):
        step(ev if cuda else None, cpu)
    sync()
    phases = [[m[i].elapsed_time(m[i + 1]) for i in range(3)] for m in ev] or [[0, 0, 0]]
    gaps = [ev[i][3].elapsed_time(ev[i + 1][0]) for i in range(len(ev) - 1)] or [0]
    cpu_step = [(cpu[4 * (i + 1)] - cpu[4 * i]) * 1e3 for i in range(n - 1)]
    cpu_ph = [[(cpu[4 * i + j + 1] - cpu[4 * i + j]) * 1e3 for j in range(3)] for i in range(n)]

    def med(x):
        return round(sorted(x)[len(x) // 2], 3)

    row = {
        "variant": os.path.basename(a.out),
        "world": comm.get_world_size(),
        "batch": cfg.SOLVER.IMS_PER_BATCH,
        "optimize_ddp": torch._dynamo.config.optimize_ddp,
        "hook": os.environ.get("HOOK", "default"),
        "model_tps": round(tps, 1),
        "gpu_ms": {k: med([p[i] for p in phases]) for i, k in enumerate(("fwd", "bwd", "opt"))},
        "gpu_gap_ms": med(gaps),
        "cpu_step_ms": med(cpu_step),
        "cpu_ms": {k: med([p[i] for p in cpu_ph]) for i, k in enumerate(("fwd", "bwd", "opt"))},
    }
    if comm.is_main_process():
        print(json.dumps(row), flush=True)
    from torch.profiler import ProfilerActivity, profile

    if os.environ.get("TRACE") == "0":
        return
    if comm.is_main_process():
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            for _ in range(6):
                step()
            sync()
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, "trace.json")
        prof.export_chrome_trace(path)
        with open(path, "rb") as f, gzip.open(path + ".gz", "wb") as g:
            shutil.copyfileobj(f, g)
        os.remove(path)
    else:
        for _ in range(6):
            step()
        sync()
    comm.synchronize()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--out", default=os.environ.get("PROBE_OUT"))
    p.add_argument("--config", default="configs/RGBNT201/DeMo.yml")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    main(p.parse_args())
