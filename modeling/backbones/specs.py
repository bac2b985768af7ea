"""The backbone types that MODEL.TRANSFORMER_TYPE names, each with its shape and feature width.

This module is the one list of backbone types. It imports no torch, so config validation asks it
for the choices and the widths (`config.validate`) without loading the model code; calling a spec,
`BACKBONE_REGISTRY.get(name)(cfg)`, builds the backbone (modeling/backbones/vit.py).
"""

from collections.abc import Callable
from dataclasses import dataclass

from utils.registry import Registry

BACKBONE_REGISTRY = Registry("backbone (MODEL.TRANSFORMER_TYPE)")


def _vit_b16(cfg):
    """ViT-B/16: 16-pixel patches, width 768, 12 blocks of 12 heads."""
    return dict(patch_size=16, width=768, depth=12, heads=12)


def _tiny(cfg):
    """The MODEL.TINY sizes (CPU tests and the demo)."""
    t = cfg.MODEL.TINY
    return dict(patch_size=t.PATCH_SIZE, width=t.WIDTH, depth=t.DEPTH, heads=t.HEADS)


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone type.

    clip: the CLIP visual tower (pre-norm, QuickGELU, SIE on the class token, `ln_post` and a
        bias-free width -> out_dim projection of every token); False: TransReID's ImageNet ViT
        (SIE on every token, the final-norm tokens as they are, stochastic depth MODEL.DROP_PATH).
    sizes: cfg -> {"patch_size", "width", "depth", "heads"} of the transformer.
    out_dim: cfg -> the CLIP projection's width; None without a projection (the width is C).
    """

    clip: bool
    sizes: Callable
    out_dim: Callable | None = None

    def patch_size(self, cfg):
        """Side of the square patches."""
        return self.sizes(cfg)["patch_size"]

    def feature_dim(self, cfg):
        """C, the width of the tokens the backbone returns (the per-modality feature width)."""
        return self.out_dim(cfg) if self.out_dim else self.sizes(cfg)["width"]

    def __call__(self, cfg):
        """The backbone (a ReIDViT) this spec describes, randomly initialised."""
        from .vit import build_vit

        return build_vit(cfg, self)


# OpenAI's CLIP ViT-B/16 projects the 768-wide tokens to 512.
BACKBONE_REGISTRY.register("ViT-B-16")(BackboneSpec(True, _vit_b16, lambda cfg: 512))
BACKBONE_REGISTRY.register("vit_base_patch16_224")(BackboneSpec(False, _vit_b16))
BACKBONE_REGISTRY.register("tiny_clip")(
    BackboneSpec(True, _tiny, lambda cfg: cfg.MODEL.TINY.EMBED_DIM)
)
BACKBONE_REGISTRY.register("tiny_vit")(BackboneSpec(False, _tiny))


def backbone_spec(cfg):
    """The spec of cfg.MODEL.TRANSFORMER_TYPE; KeyError listing the choices for an unknown one."""
    return BACKBONE_REGISTRY.get(cfg.MODEL.TRANSFORMER_TYPE)
