"""Optimizer with DeMo's parameter groups.

Four groups at most (empty ones are dropped), each tagged with a `name` for logging:

| group         | parameters           | lr                           | weight decay      |
| ------------- | -------------------- | ---------------------------- | ----------------- |
| head          | non-backbone weights | BASE_LR                      | WEIGHT_DECAY      |
| head_bias     | non-backbone biases  | BASE_LR x BIAS_LR_FACTOR     | WEIGHT_DECAY_BIAS |
| backbone      | `backbone.*` weights | BACKBONE_LR                  | WEIGHT_DECAY      |
| backbone_bias | `backbone.*` biases  | BACKBONE_LR (no bias factor) | WEIGHT_DECAY_BIAS |

Frozen parameters (`requires_grad=False`) are left out.
"""

import logging

import torch

logger = logging.getLogger(__name__)


def _is_bias(name):
    return name == "bias" or name.endswith(".bias")


def param_groups(cfg, model):
    """List of optimizer param-group dicts (see the module table)."""
    s = cfg.SOLVER
    spec = {
        "head": (s.BASE_LR, s.WEIGHT_DECAY),
        "head_bias": (s.BASE_LR * s.BIAS_LR_FACTOR, s.WEIGHT_DECAY_BIAS),
        "backbone": (s.BACKBONE_LR, s.WEIGHT_DECAY),
        "backbone_bias": (s.BACKBONE_LR, s.WEIGHT_DECAY_BIAS),
    }
    members = {k: [] for k in spec}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        group = "backbone" if name.startswith("backbone.") else "head"
        members[group + ("_bias" if _is_bias(name) else "")].append(p)
    groups = []
    for key, params in members.items():
        if params:
            lr, wd = spec[key]
            groups.append({"name": key, "params": params, "lr": lr, "weight_decay": wd})
            logger.info(
                "param group %-13s %4d tensors, %10d values, lr %.3g, wd %.3g",
                key,
                len(params),
                sum(p.numel() for p in params),
                lr,
                wd,
            )
    return groups


def build_optimizer(cfg, model):
    """Adam, AdamW or SGD (momentum SOLVER.MOMENTUM) over `param_groups(cfg, model)`."""
    groups = param_groups(cfg, model)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    name = cfg.SOLVER.OPTIMIZER_NAME
    # One fused kernel per step on the GPU instead of a loop over the ~200 tensors.
    fused = all(p.is_cuda for g in groups for p in g["params"])
    if name == "SGD":
        return torch.optim.SGD(
            groups, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM, fused=fused
        )
    if name == "AdamW":
        return torch.optim.AdamW(groups, lr=cfg.SOLVER.BASE_LR, fused=fused)
    if name == "Adam":
        return torch.optim.Adam(groups, lr=cfg.SOLVER.BASE_LR, fused=fused)
    raise ValueError(f"SOLVER.OPTIMIZER_NAME {name!r}: use Adam, AdamW or SGD")
