"""Parameter groups and the SPEC 5 learning-rate table."""

import math

import pytest
import torch
from torch import nn

from config import load_config
from solver import build_optimizer, build_scheduler


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.sie = nn.Parameter(torch.zeros(3, 4))
        self.head = nn.Linear(4, 2)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def _groups(opt):
    return {g["name"]: g for g in opt.param_groups}


def test_param_groups_lrs_and_membership():
    cfg = load_config("configs/RGBNT201/DeMo.yml")
    model = Tiny()
    groups = _groups(build_optimizer(cfg, model))
    assert groups["head"]["lr"] == pytest.approx(3.5e-4)
    assert groups["head_bias"]["lr"] == pytest.approx(7e-4)
    assert groups["backbone"]["lr"] == pytest.approx(5e-6)
    assert groups["backbone_bias"]["lr"] == pytest.approx(5e-6)
    ids = {k: {id(p) for p in g["params"]} for k, g in groups.items()}
    assert ids["backbone_bias"] == {id(model.backbone[0].bias), id(model.backbone[1].bias)}
    assert id(model.sie) in ids["head"]  # the SIE table trains at the head LR
    assert ids["head_bias"] == {id(model.head.bias)}
    every = set().union(*ids.values())
    assert id(model.frozen.weight) not in every and id(model.frozen.bias) not in every
    assert all(g["weight_decay"] == pytest.approx(1e-4) for g in groups.values())


@pytest.mark.parametrize("name,cls", [("SGD", torch.optim.SGD), ("AdamW", torch.optim.AdamW)])
def test_optimizer_choice(name, cls):
    cfg = load_config(None, ["SOLVER.OPTIMIZER_NAME", name])
    assert isinstance(build_optimizer(cfg, Tiny()), cls)


# SPEC 5, RGBNT201 with LR noise: epoch -> (head lr, backbone lr).
EXPECTED = {
    1: (2.34e-5, 1.13e-5),
    5: (3.03e-4, 3.15e-5),
    10: (2.71e-4, 3.89e-6),
    25: (1.54e-4, 2.35e-6),
    49: (7.41e-7, 3.78e-7),
    50: (3.5e-7, 3.5e-7),
}


def test_schedule_matches_spec_table():
    cfg = load_config("configs/RGBNT201/DeMo.yml")
    opt = build_optimizer(cfg, Tiny())
    sched = build_scheduler(cfg, opt)
    seen = {}
    for epoch in range(1, cfg.SOLVER.MAX_EPOCHS + 1):
        sched.step(epoch)
        g = _groups(opt)
        seen[epoch] = (g["head"]["lr"], g["backbone"]["lr"], g["head_bias"]["lr"])
    for epoch, (head, backbone) in EXPECTED.items():
        # SPEC quotes three significant digits.
        assert f"{seen[epoch][0]:.2e}" == f"{head:.2e}", epoch
        assert f"{seen[epoch][1]:.2e}" == f"{backbone:.2e}", epoch
    # Biases peak at twice the head LR but share the absolute floor.
    assert seen[5][2] > seen[5][0]
    assert seen[50][2] == pytest.approx(3.5e-7)


def test_schedule_without_noise_is_warmup_then_cosine():
    cfg = load_config("configs/RGBNT201/DeMo.yml", ["SOLVER.LR_NOISE", False])
    opt = build_optimizer(cfg, Tiny())
    sched = build_scheduler(cfg, opt)
    sched.step(0)
    assert _groups(opt)["backbone"]["lr"] == pytest.approx(3.5e-5)
    sched.step(10)
    cosine = 3.5e-7 + 0.5 * (3.5e-4 - 3.5e-7) * (1 + math.cos(math.pi * 10 / 50))
    assert _groups(opt)["head"]["lr"] == pytest.approx(cosine, rel=1e-9)
    sched.step(25)
    assert _groups(opt)["head"]["lr"] == pytest.approx((3.5e-4 + 3.5e-7) / 2, rel=1e-6)
