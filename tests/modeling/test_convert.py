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
        (r"hdm\.attn\.(\d)\.(.+)", lambda m: f"generalFusion.{HDM[int(m[1])]}.{m[2]}"),
        (
            r"atm\.experts\.(\d+)\.(\d+)\.(.+)",
            lambda m: f"generalFusion.moe.experts.{m[1]}.expertHead.{m[2]}.mlp.{m[3]}",
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
    for i, name in enumerate(HDM):
        demo[f"generalFusion.{name}_token"] = sd["hdm.tokens"][i].reshape(1, 1, -1)
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
        "atm.experts.3.6.2.running_var",
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
