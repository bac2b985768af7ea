"""Backbones by MODEL.TRANSFORMER_TYPE, with MODEL.PRETRAIN_PATH loaded (or a loud warning).

`BACKBONE_REGISTRY` (specs.py) lists the types; the rest is imported on first use (PEP 562), so
the registry loads without torch.
"""

from utils.lazy import lazy_getattr

from .specs import BACKBONE_REGISTRY, backbone_spec

# name -> the submodule that defines it
_LAZY = {
    "build_backbone": "build",
    "ReIDViT": "vit",
    "load_pretrained": "checkpoint",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["BACKBONE_REGISTRY", "backbone_spec", *_LAZY]
