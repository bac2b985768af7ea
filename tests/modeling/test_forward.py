"""Forward passes of tiny models: outputs per return_pattern, losses, errors, mixed precision."""

import pytest
import torch

from modeling import build_model, select_pattern

CASES = [  # (config, overrides, C, fused width)
    ("DeMo", (), 64, 7 * 64),
    ("DeMo", ("MODEL.JOINT_ORI_HEAD", "False", "MODEL.HEAD", "8"), 64, 7 * 64),
    ("DeMo", ("MODEL.ATM", "False"), 64, 7 * 64),
    ("DeMo", ("MODEL.HDM", "False", "MODEL.ATM", "False", "TEST.RETURN_PATTERN", "1"), 64, None),
    ("DeMo_SDTPS", (), 64, 3 * 64),
    ("DeMo_SDTPS", ("MODEL.JOINT_ORI_HEAD", "False", "MODEL.STRIDE_SIZE", "(6, 6)"), 64, 3 * 64),
    ("DeMo_SDTPS", ("MODEL.TRANSFORMER_TYPE", "tiny_vit", "MODEL.TINY.WIDTH", "48"), 48, 3 * 48),
]


@pytest.mark.parametrize("name,opts,dim,fused", CASES)
def test_outputs_per_pattern(smoke_cfg, make_batch, name, opts, dim, fused):
    cfg = smoke_cfg(name, *opts)
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=5, num_cameras=4)
    batch = make_batch(cfg)
    losses = model.train()(batch)
    expected = ["ori"] if cfg.MODEL.JOINT_ORI_HEAD else list(cfg.INPUT.MODALITIES)
    expected += ["fused"] if fused else []
    assert sorted(k for k in losses if k.startswith("loss_")) == sorted(
        f"loss_{kind}_{e}" for e in expected for kind in ("id", "tri")
    )
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert not any(v.requires_grad for k, v in losses.items() if k.startswith("acc_"))
    sum(v for k, v in losses.items() if k.startswith("loss_")).backward()
    feats = model.eval()(batch)
    assert feats["ori"].shape == (4, 3 * dim)
    if fused is None:
        assert "fused" not in feats and model.patterns == (1,)
        with pytest.raises(ValueError, match="fused"):
            select_pattern(feats, 2)
        return
    assert model.patterns == (1, 2, 3)
    widths = {1: 3 * dim, 2: fused, 3: 3 * dim + fused}
    for pattern, width in widths.items():
        assert select_pattern(feats, pattern).shape == (4, width)


def test_stride_12_style_overlap_token_flow(smoke_cfg, make_batch):
    cfg = smoke_cfg("DeMo_SDTPS", "MODEL.STRIDE_SIZE", "(6, 6)")
    model = build_model(cfg, 5, 4).eval()
    assert model.backbone.grid_size == (10, 5)
    s = model.sdtps
    assert (s.num_patches, s.keep, s.num_out) == (50, 25, 10)
    out = model(make_batch(cfg), return_selection=True)
    sel = out["selection"]["RGB"]
    assert sel["kept_index"].shape == (4, 25) and sel["weights"].shape == (4, 10, 25)
    assert sel["tokens"].shape == (4, 11, 64) and sel["mask"].sum(1).eq(25).all()


def test_sdtps_loss_weight_scales_the_fused_pair(smoke_cfg, make_batch):
    out = {}
    for w in ("1.0", "2.0"):
        cfg = smoke_cfg("DeMo_SDTPS", "MODEL.SDTPS_LOSS_WEIGHT", w)
        torch.manual_seed(0)
        out[w] = build_model(cfg, 5, 4).train()(make_batch(cfg))
    assert torch.allclose(out["2.0"]["loss_id_fused"], 2 * out["1.0"]["loss_id_fused"])
    assert torch.allclose(out["2.0"]["loss_tri_ori"], out["1.0"]["loss_tri_ori"])


def test_bad_camera_and_bad_size_fail_clearly(smoke_cfg, make_batch):
    cfg = smoke_cfg("DeMo_SDTPS")
    model = build_model(cfg, 5, 4).eval()
    batch = make_batch(cfg)
    batch["camids"] = torch.tensor([0, 1, 2, 4])
    with pytest.raises(ValueError, match="camera ids"):
        model(batch)
    with pytest.raises(ValueError, match="N=32"):
        model.sdtps([torch.randn(2, 30, 64)] * 3, [torch.randn(2, 64)] * 3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["DeMo", "DeMo_SDTPS"])
def test_autocast_whole_model_is_finite(smoke_cfg, make_batch, name, dtype):
    cfg = smoke_cfg(name, "MODEL.SDTPS_USE_GUMBEL", "True")
    torch.manual_seed(0)
    model = build_model(cfg, 5, 4).train()
    batch = make_batch(cfg)
    with torch.autocast("cpu", dtype=dtype):
        losses = model(batch)
    total = sum(v for k, v in losses.items() if k.startswith("loss_"))
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.autocast("cpu", dtype=dtype), torch.no_grad():
        feats = model.eval()(batch)
    assert all(torch.isfinite(v).all() for v in feats.values())


@pytest.mark.parametrize("stride", [16, 12])
def test_patch_embedding_is_the_convolution(stride):
    """The non-overlapping patch embedding runs as one matrix product: same result as Conv2d."""
    from modeling.backbones.vit import StridedPatchEmbed

    torch.manual_seed(0)
    m = StridedPatchEmbed(stride=stride, img_size=(64, 32), patch_size=16, in_chans=3, embed_dim=24)
    x = torch.randn(2, 3, 64, 32)
    want = m.proj(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)
    with pytest.raises((ValueError, AssertionError), match="32"):
        m(torch.randn(1, 3, 32, 32))
