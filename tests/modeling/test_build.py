"""Model construction: parameter targets, parameter naming, token counts, the exclusive switch."""

import pytest
import torch

from config import load_config
from modeling import build_model, count_trainable
from modeling.backbones.vit import grid_size

from .conftest import REPO


def meta_model(config, *opts, num_classes=171, num_cameras=4):
    """A full-size model on the meta device: exact shapes and counts, no memory, no init time."""
    cfg = load_config(str(REPO / "configs" / config), list(opts))
    with torch.device("meta"):
        return build_model(cfg, num_classes, num_cameras)


@pytest.mark.parametrize(
    "opts,target",
    [
        ((), 98_792_960),
        (
            (
                "MODEL.GLOBAL_LOCAL",
                "False",
                "MODEL.HDM",
                "False",
                "MODEL.ATM",
                "False",
                "TEST.RETURN_PATTERN",
                "1",
            ),
            86.41e6,
        ),
        (("MODEL.HDM", "False", "MODEL.ATM", "False", "TEST.RETURN_PATTERN", "1"), 87.99e6),
        (("MODEL.ATM", "False"), 95.96e6),
    ],
)
def test_rgbnt201_parameter_targets(opts, target):
    n = count_trainable(meta_model("RGBNT201/DeMo.yml", *opts))
    if isinstance(target, int):
        assert n == target
    else:
        assert round(n / 1e6, 2) == pytest.approx(target / 1e6)


def test_rgbnt100_parameter_target():
    model = meta_model("RGBNT100/DeMo.yml", num_classes=50, num_cameras=8)
    assert count_trainable(model) == 97_947_136
    assert len(model.ori_heads) == 3


def test_parameter_naming_and_bnneck():
    model = meta_model("RGBNT201/DeMo.yml")
    names = dict(model.named_parameters())
    backbone = {n for n in names if n.startswith("backbone.")}
    assert sum(names[n].numel() for n in backbone) == 86_140_416
    assert "sie.weight" in names and names["sie.weight"].shape == (4, 768)
    assert model.backbone.pos_embed.shape == (1, 129, 768)
    for head in (model.ori_heads[0], model.fused_head):
        assert not head.bn.bias.requires_grad and head.classifier.bias is None
    assert model.patterns == (1, 2, 3)


def test_sdtps_token_flow_from_real_grid():
    model = meta_model("RGBNT201/DeMo_SDTPS.yml")
    s = model.sdtps
    assert (s.num_patches, s.keep, s.num_out) == (128, 64, 25)
    assert model.hdm is None and model.atm is None
    model = meta_model("RGBNT201/DeMo_SDTPS.yml", "MODEL.STRIDE_SIZE", "(12, 12)")
    s = model.sdtps
    assert (
        model.backbone.grid_size
        == (21, 10)
        == grid_size(
            model_cfg := load_config(
                str(REPO / "configs/RGBNT201/DeMo.yml"), ["MODEL.STRIDE_SIZE", "(12, 12)"]
            )
        )
    )
    assert model_cfg.MODEL.STRIDE_SIZE == (12, 12)
    assert (s.num_patches, s.keep, s.num_out) == (210, 105, 42)
    vehicles = meta_model("RGBNT100/DeMo_SDTPS.yml", num_classes=50, num_cameras=8)
    assert vehicles.backbone.grid_size == (8, 16)


def test_sdtps_switch_is_exclusive(caplog):
    with caplog.at_level("INFO"):
        cfg = load_config(str(REPO / "configs/RGBNT201/DeMo.yml"), ["MODEL.USE_SDTPS", "True"])
    assert not cfg.MODEL.HDM and not cfg.MODEL.ATM
    assert "exclusive" in caplog.text
    raw = cfg.clone()
    raw.defrost()
    raw.MODEL.HDM = True
    with pytest.raises(ValueError, match="exclusive"), torch.device("meta"):
        build_model(raw, 10, 4)


def test_imagenet_backbone_shape():
    model = meta_model("RGBNT201/DeMo.yml", "MODEL.TRANSFORMER_TYPE", "vit_base_patch16_224")
    assert model.backbone.out_dim == 768 and model.fused_head.bn.num_features == 7 * 768
    assert model.backbone.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    clip = meta_model("RGBNT201/DeMo.yml")
    assert isinstance(clip.backbone.blocks[-1].drop_path1, torch.nn.Identity)


WIDTHS = {"ViT-B-16": 512, "vit_base_patch16_224": 768, "tiny_clip": 64, "tiny_vit": 96}


@pytest.mark.parametrize("name", sorted(WIDTHS))
def test_each_backbone_type_builds_with_its_registered_width(name):
    """The registry is the one table of backbone types and widths: the config's feature width,
    the registered one and the built backbone's agree (CLIP ViT-B/16 projects to 512, the
    ImageNet ViT-B/16 keeps its 768, the tiny ones follow MODEL.TINY)."""
    from config import feature_dim
    from modeling.backbones import BACKBONE_REGISTRY

    assert BACKBONE_REGISTRY.names() == sorted(WIDTHS)
    cfg = load_config(
        str(REPO / "configs" / "RGBNT201" / "DeMo.yml"), ["MODEL.TRANSFORMER_TYPE", name]
    )
    spec = BACKBONE_REGISTRY.get(name)
    with torch.device("meta"):
        backbone = spec(cfg)
    assert backbone.out_dim == feature_dim(cfg) == spec.feature_dim(cfg) == WIDTHS[name]
    assert tuple(backbone.patch_embed.patch_size) == (spec.patch_size(cfg),) * 2
