"""DeMo checkpoints (DeMo's key names) convert into ours; the CLI writes a loadable file."""

import re

import pytest
import torch

from modeling import build_model, load_weights
from modeling.convert import convert_demo_state_dict

from .conftest import OpenAICLIP

HDM = ("r", "n", "t", "rn", "rt", "nt", "rnt")


def to_demo_names(model):
    """Our tiny model's state dict in DeMo's naming, written independently of modeling.convert."""
    sd = model.state_dict()
    visual = OpenAICLIP(width=64, layers=2, heads=4, patch=8, grid=7, out_dim=64).visual
    demo = {f"BACKBONE.base.{k}": v for k, v in visual.state_dict().items()}
    demo["BACKBONE.base.positional_embedding"] = torch.randn(33, 64)
    demo["BACKBONE.cv_embed"] = sd["sie.weight"].unsqueeze(1)
    rules = [
        (
            r"pife\.reduce\.(\d)\.(.+)",
            lambda m: f"{('rgb', 'nir', 'tir')[int(m[1])]}_reduce.{m[2]}",
        ),
        (r"atm\.gate\.(.+)", lambda m: f"generalFusion.moe.gating_network.gate.linear_re.{m[1]}"),
        (r"atm\.(q|k)\.weight", lambda m: f"generalFusion.moe.gating_network.gate.{m[1]}_.weight"),
        (r"fused_head\.bn\.(.+)", lambda m: f"bottleneck_moe.{m[1]}"),
        (r"fused_head\.classifier\.(.+)", lambda m: f"classifier_moe.{m[1]}"),
        (r"ori_heads\.0\.bn\.(.+)", lambda m: f"bottleneck.{m[1]}"),
        (r"ori_heads\.0\.classifier\.(.+)", lambda m: f"classifier.{m[1]}"),
    ]
    for key, value in sd.items():
        for pattern, name in rules:
            m = re.fullmatch(pattern, key)
            if m:
                demo[name(m)] = value
    for i, name in enumerate(HDM):  # DeMo: one nn.MultiheadAttention per subset
        demo[f"generalFusion.{name}_token"] = sd["hdm.tokens"][i].reshape(1, 1, -1)
        demo[f"generalFusion.{name}.in_proj_weight"] = sd["hdm.in_proj.weight"][i]
        demo[f"generalFusion.{name}.in_proj_bias"] = sd["hdm.in_proj.bias"][i]
        demo[f"generalFusion.{name}.out_proj.weight"] = sd["hdm.out_proj.weight"][i]
        demo[f"generalFusion.{name}.out_proj.bias"] = sd["hdm.out_proj.bias"][i]
    heads, d = model.atm.heads, model.atm.head_dim
    for e in range(7):  # DeMo: one Sequential(Linear, QuickGELU, BatchNorm1d) per head and expert
        for h in range(heads):
            row = e * heads + h
            prefix = f"generalFusion.moe.experts.{h}.expertHead.{e}.mlp"
            demo[f"{prefix}.0.weight"] = sd["atm.experts.weight"][row]
            demo[f"{prefix}.0.bias"] = sd["atm.experts.bias"][row]
            for k in ("weight", "bias", "running_mean", "running_var"):
                demo[f"{prefix}.2.{k}"] = sd[f"atm.expert_norm.{k}"][row * d : (row + 1) * d]
            demo[f"{prefix}.2.num_batches_tracked"] = sd["atm.expert_norm.num_batches_tracked"]
    return demo


def test_demo_checkpoint_converts_and_loads(smoke_cfg, tmp_path):
    cfg = smoke_cfg("DeMo")
    torch.manual_seed(0)
    model = build_model(cfg, 5, 4)
    demo = to_demo_names(model)
    ours = convert_demo_state_dict(demo, cfg)
    assert torch.equal(
        ours["backbone.blocks.1.attn.qkv.weight"],
        demo["BACKBONE.base.transformer.resblocks.1.attn.in_proj_weight"],
    )
    assert torch.equal(ours["backbone.proj"], demo["BACKBONE.base.proj"])
    path = tmp_path / "demo.pth"
    torch.save({f"module.{k}": v for k, v in demo.items()}, path)
    fresh = build_model(cfg, 5, 4)
    assert load_weights(fresh, str(path), cfg) == len(fresh.state_dict())
    for key in (
        "hdm.tokens",
        "atm.expert_norm.running_var",
        "hdm.in_proj.weight",
        "atm.experts.weight",
        "sie.weight",
        "fused_head.bn.weight",
    ):
        assert torch.equal(fresh.state_dict()[key], model.state_dict()[key]), key

    from tools.convert_demo_checkpoint import main

    out = tmp_path / "ours.pth"
    main(["--config_file", "configs/_smoke/DeMo.yml", str(path), str(out)])
    again = build_model(cfg, 5, 4)
    load_weights(again, str(out), cfg)
    assert torch.equal(again.state_dict()["atm.q.weight"], model.state_dict()["atm.q.weight"])


def test_demo_checkpoint_with_unknown_keys_fails_clearly(smoke_cfg):
    cfg = smoke_cfg("DeMo")
    model = build_model(cfg, 5, 4)
    demo = to_demo_names(model)
    demo["generalFusion.extra_thing.weight"] = torch.zeros(3)
    del demo["bottleneck_moe.weight"]
    with pytest.raises(
        ValueError, match=r"missing.*fused_head\.bn\.weight.*unexpected.*extra_thing"
    ):
        load_weights(model, demo, cfg)


def test_checkpoint_of_the_per_module_fusion_layout_loads(smoke_cfg, tmp_path):
    """Our checkpoints from before the stacked HDM / ATM (hdm.attn.{s}.*, atm.experts.{h}.{e}.*)."""
    cfg = smoke_cfg("DeMo")
    torch.manual_seed(0)
    model = build_model(cfg, 5, 4)
    demo = to_demo_names(model)
    old = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith(("hdm.in_proj", "hdm.out_proj", "atm.experts", "atm.expert_norm"))
    }
    for key, v in demo.items():
        m = re.fullmatch(r"generalFusion\.(r|n|t|rn|rt|nt|rnt)\.(in_proj_\w+|out_proj\.\w+)", key)
        if m:
            old[f"hdm.attn.{HDM.index(m[1])}.{m[2]}"] = v
        m = re.fullmatch(r"generalFusion\.moe\.experts\.(\d+)\.expertHead\.(\d+)\.mlp\.(.+)", key)
        if m:
            old[f"atm.experts.{m[1]}.{m[2]}.{m[3]}"] = v
    path = tmp_path / "old.pth"
    torch.save({"model": old, "epoch": 3}, path)
    fresh = build_model(cfg, 5, 4)
    assert load_weights(fresh, str(path), cfg) == len(fresh.state_dict())
    for key, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], v), key
    del old["atm.experts.1.6.0.bias"]
    with pytest.raises(ValueError, match=r"atm\.experts\.bias needs 28 parts"):
        load_weights(fresh, {"model": old}, cfg)
