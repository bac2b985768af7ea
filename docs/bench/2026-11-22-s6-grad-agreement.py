"""Session 6: do the optimised path's gradients agree with fp32 eager ones? (GPU)

    python3 docs/bench/2026-11-22-s6-grad-agreement.py

DeMo (RGBNT201 recipe, random weights, dropout off) on one fixed batch of 64 random triplets:
the gradients of one training step in fp32 eager, bf16 autocast eager, bf16 autocast under
torch.compile (the optimised path without CUDA graphs, which do not change the arithmetic) and
fp16 autocast eager with the loss scaled by 2^16 (DeMo's own AMP, GradScaler's first scale).
Per parameter group: cosine similarity with fp32 and the norm ratio. PATHS=a,b picks paths.
"""

import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from config import load_config  # noqa: E402
from engine.launch import autocast, compile_model  # noqa: E402
from modeling import build_model  # noqa: E402

torch.manual_seed(0)
cfg = load_config(os.environ.get("CONFIG", "configs/RGBNT201/DeMo.yml"), ["SOLVER.COMPILE", True])
dev = torch.device(os.environ.get("DEVICE", "cuda"))
base = build_model(cfg, 171, 4).to(dev).train()
for m in base.modules():
    if isinstance(m, torch.nn.Dropout):
        m.p = 0.0
base.hdm.dropout = 0.0
h, w = cfg.INPUT.SIZE_TRAIN
g = torch.Generator(device=dev).manual_seed(1)
batch = {"images": {m: torch.randn(64, 3, h, w, generator=g, device=dev)
                    for m in cfg.INPUT.MODALITIES},
         "pids": torch.arange(8, device=dev).repeat_interleave(8),
         "camids": torch.zeros(64, dtype=torch.long, device=dev)}


def grads(dtype, compiled):
    scale = 2.0**16 if dtype == torch.float16 else 1.0  # GradScaler's first scale, as DeMo's AMP
    model = copy.deepcopy(base)
    forward = compile_model(cfg, model) if compiled else model
    for _ in range(2 if compiled else 1):  # the compiled one: the second call, after compiling
        model.zero_grad(set_to_none=True)
        with autocast(dev, dtype):
            out = forward(batch)
        loss = sum(v for k, v in out.items() if k.startswith("loss_"))
        (loss * scale).backward()
    losses = {k: round(float(v), 5) for k, v in out.items() if k.startswith("loss_")}
    return losses, {n: p.grad.double() / scale for n, p in model.named_parameters()
                    if p.grad is not None}


def group(name):
    return "backbone.blocks" if ".blocks." in name else ".".join(name.split(".")[:2])


ref_losses, ref = grads(None, False)
print(json.dumps({"path": "fp32 eager", "losses": ref_losses}), flush=True)
paths = (("bf16 eager", torch.bfloat16, False), ("bf16 compiled", torch.bfloat16, True),
         ("fp16 eager", torch.float16, False))
for label, dtype, compiled in paths:
    if os.environ.get("PATHS") and label not in os.environ["PATHS"].split(","):
        continue
    losses, got = grads(dtype, compiled)
    acc = {}
    for n, x in ref.items():
        a = acc.setdefault(group(n), [0.0, 0.0, 0.0])
        y = got[n]
        a[0] += float((x * y).sum())
        a[1] += float((x * x).sum())
        a[2] += float((y * y).sum())
    print(json.dumps({"path": label, "losses": losses, "groups": {
        k: {"cos": round(xy / (xx * yy) ** 0.5, 5), "norm_ratio": round((yy / xx) ** 0.5, 4)}
        for k, (xy, xx, yy) in acc.items()}}), flush=True)
