"""Numerics and compilation of the model's forward, shared by the trainer and the evaluator:
the autocast dtype of SOLVER.AMP, the GradScaler of fp16, torch.compile of SOLVER.COMPILE."""

import torch


def amp_dtype(cfg, device):
    """Autocast dtype of SOLVER.AMP on `device`, or None for full precision.

    auto: bf16 on CUDA devices that support it, fp16 (with a GradScaler) on older GPUs, off on CPU.
    Explicit bf16 / fp16 are honoured on any device.
    """
    mode = cfg.SOLVER.AMP
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def autocast(device, dtype):
    """torch.autocast for `dtype`; disabled (full precision) when `dtype` is None."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def grad_scaler(device, dtype):
    """The loss scaler of fp16 training; disabled (scale 1, a plain optimizer step) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def compile_model(cfg, model):
    """SOLVER.COMPILE: `model` under torch.compile (SOLVER.COMPILE_MODE, static shapes: one graph
    per batch shape), sharing its parameters; otherwise `model` itself."""
    if not cfg.SOLVER.COMPILE:
        return model
    return torch.compile(model, mode=cfg.SOLVER.COMPILE_MODE, dynamic=False)


def uses_cuda_graphs(cfg):
    """Whether compiled calls replay CUDA graphs, whose outputs the next replay overwrites."""
    return cfg.SOLVER.COMPILE and cfg.SOLVER.COMPILE_MODE == "reduce-overhead"
