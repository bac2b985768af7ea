"""Summarise a Chrome trace of N training steps (docs/bench/ddp_step_probe.py writes them).

    python3 docs/bench/trace_summary.py TRACE.json.gz [--steps 6]

GPU time per step, from the end of the first step (the profiler's start slows it) to the end:
the step, GPU idle (no kernel or copy on any stream), busy time per stream, and the kernels of
DDP's per-parameter gradient copies (one elementwise multiply by 1/world into the bucket), NCCL
and the fused Adam.
"""

import argparse
import gzip
import json
from collections import Counter


def summary(path, steps):
    events = json.load(gzip.open(path))["traceEvents"]
    k = sorted(
        (e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")),
        key=lambda e: e["ts"],
    )
    t0 = k[0]["ts"]
    step = (max(e["ts"] + e["dur"] for e in k) - t0) / steps
    k = [e for e in k if e["ts"] - t0 >= step]
    n = (max(e["ts"] + e["dur"] for e in k) - k[0]["ts"]) / step
    end, idle, stream, kinds = None, 0.0, Counter(), Counter()
    for e in k:
        if end is not None and e["ts"] > end:
            idle += e["ts"] - end
        end = max(end or 0, e["ts"] + e["dur"])
        stream[e["args"].get("stream")] += e["dur"]
        name = e["name"]
        kind = (
            "ddp_copy"
            if "AUnaryFunctor" in name
            else "nccl"
            if "nccl" in name.lower()
            else "adam"
            if "multi_tensor_apply" in name
            else None
        )
        if kind:
            kinds[kind] += e["dur"]

    def ms(x):
        return round(x / n / 1e3, 3)

    return {
        "step_ms": ms(n * step),
        "idle_ms": ms(idle),
        "stream_busy_ms": {s: ms(v) for s, v in stream.most_common()},
        **{f"{kk}_ms": ms(v) for kk, v in kinds.items()},
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("trace")
    p.add_argument("--steps", type=int, default=6)
    a = p.parse_args()
    print(json.dumps({"trace": a.trace, **summary(a.trace, a.steps)}))
