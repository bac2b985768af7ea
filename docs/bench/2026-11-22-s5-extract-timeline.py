"""Where extraction end to end loses time against the model alone (session 5, H100).

    python3 docs/bench/2026-11-22-s5-extract-timeline.py /tmp/bench [WORKERS ...]

For DeMo (compiled, CUDA graphs) on 20,000 triplets of the synthetic RGBNT201 set: warm
extract_features (the test loader kept) per worker count; then, with the kept loader, the same
loop with a CUDA event after each batch: when the host received each batch and when the GPU
finished it. GPU idle time = sum over batches of max(0, received_j - gpu_done_(j-1)).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from config import load_config  # noqa: E402
from data import build_dataset  # noqa: E402
from engine import evaluator  # noqa: E402
from engine.launch import amp_dtype, autocast, compile_model, setup  # noqa: E402
from modeling import build_model  # noqa: E402

root = sys.argv[1]
workers = [int(w) for w in sys.argv[2:]] or [14]


def report(**row):
    print(json.dumps(row), flush=True)


for w in workers:
    cfg = load_config("configs/RGBNT201/DeMo.yml", [
        "DATASETS.ROOT_DIR", root, "DATALOADER.NUM_WORKERS", w, "SOLVER.COMPILE", True,
        "SOLVER.COMPILE_MODE", "reduce-overhead", "OUTPUT_DIR", "/tmp/tl"])
    device = setup(cfg)
    splits = build_dataset(cfg)
    records = (list(splits.train) + list(splits.gallery)) * 6
    records = records[:20_000]
    if w == workers[0]:
        model = build_model(cfg, splits.num_train_pids, splits.num_cameras).to(device)
        evaluator.extract_features(cfg, model, records[:512])
    for rep in range(3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        evaluator.extract_features(cfg, model, records)
        torch.cuda.synchronize()
        report(workers=w, rep=rep, e2e_tps=round(len(records) / (time.perf_counter() - t), 1))

    t = time.perf_counter()
    loader = evaluator._test_loader(cfg, records, device)
    report(workers=w, kept_loader_lookup_s=round(time.perf_counter() - t, 4))
    forward = compile_model(cfg, model)
    dtype = amp_dtype(cfg, device)
    model.eval()
    with torch.no_grad():
        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        recv, done, outs = [], [], []
        for batch in loader:
            recv.append(time.perf_counter() - t0)
            n = len(batch["paths"])
            if n < 128:
                batch = evaluator._pad(batch, 128)
            torch.compiler.cudagraph_mark_step_begin()
            with autocast(device, dtype):
                feats = forward(batch)
            outs.append({k: v[:n].float() for k, v in feats.items() if torch.is_tensor(v)})
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            done.append(e)
        torch.cuda.synchronize()
        total = time.perf_counter() - t0
        # extract_features' tail, as written: concatenate, to the host, order by index
        t = time.perf_counter()
        local = {k: torch.cat([o[k] for o in outs]).cpu() for k in outs[0]}
        t_host = time.perf_counter() - t
        index = torch.arange(len(records))
        order = torch.argsort(index)
        local = {k: v[order] for k, v in local.items()}
        t_tail = time.perf_counter() - t
        report(workers=w, tail_to_host_s=round(t_host, 4), tail_total_s=round(t_tail, 4),
               feature_MB=round(sum(v.nbytes for v in local.values()) / 2**20, 1))
    gpu = [start.elapsed_time(e) / 1000 for e in done]
    idle = sum(max(0.0, recv[j] - gpu[j - 1]) for j in range(1, len(gpu)))
    per = [gpu[j] - max(gpu[j - 1], recv[j]) for j in range(1, len(gpu))]
    report(workers=w, loop_tps=round(len(records) / total, 1), total_s=round(total, 3),
           first_recv_s=round(recv[0], 3), first_done_s=round(gpu[0], 3),
           last_recv_s=round(recv[-1], 3), last_done_s=round(gpu[-1], 3),
           gpu_idle_after_first_s=round(idle, 3),
           gpu_s_per_batch_median=round(sorted(per)[len(per) // 2], 4),
           gpu_s_per_batch_mean=round(sum(per) / len(per), 4))
    report(workers=w, recv_every_10=[round(x, 3) for x in recv[::10]],
           done_every_10=[round(x, 3) for x in gpu[::10]])
    evaluator.close_test_loaders()
