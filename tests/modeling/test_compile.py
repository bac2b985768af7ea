"""SOLVER.COMPILE changes speed, not training: compiled training steps equal eager ones."""

import copy

import pytest
import torch

from engine.precision import compile_model
from modeling import build_model
from solver import build_optimizer


def _losses(cfg, model, steps=3):
    """Training losses of `steps` Adam steps on fixed batches, from a copy of `model`."""
    model = copy.deepcopy(model).train()
    optimizer = build_optimizer(cfg, model)
    forward = compile_model(cfg, model)
    h, w = cfg.INPUT.SIZE_TRAIN
    losses = []
    for i in range(steps):
        g = torch.Generator().manual_seed(i)
        batch = {
            "images": {m: torch.randn(8, 3, h, w, generator=g) for m in cfg.INPUT.MODALITIES},
            "pids": torch.arange(4).repeat_interleave(2),
            "camids": torch.zeros(8, dtype=torch.long),
        }
        loss = sum(v for k, v in forward(batch).items() if k.startswith("loss_"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.slow
def test_compiled_training_steps_equal_eager_ones(smoke_cfg):
    torch.manual_seed(0)
    model = build_model(smoke_cfg("DeMo"), 4, 4)
    model.hdm.dropout = 0.0  # the compiled graph draws its own dropout masks
    eager = _losses(smoke_cfg("DeMo"), model)
    compiled = _losses(smoke_cfg("DeMo", "SOLVER.COMPILE", True), model)
    assert compiled == pytest.approx(eager, rel=1e-5)
    assert eager[0] != eager[-1]  # the steps did train
