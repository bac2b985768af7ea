"""Backbones by MODEL.TRANSFORMER_TYPE, with MODEL.PRETRAIN_PATH loaded (or a loud warning).

`BACKBONE_REGISTRY` (specs.py) lists the types; the rest is imported on first use (PEP 562), so
the registry loads without torch.
"""

import importlib

from .specs import BACKBONE_REGISTRY, backbone_spec

# name -> the submodule that defines it
_LAZY = {
    "build_backbone": "build",
    "ReIDViT": "vit",
    "load_pretrained": "checkpoint",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'modeling.backbones' has no attribute {name!r}")


__all__ = ["BACKBONE_REGISTRY", "backbone_spec", *_LAZY]
