"""Backbones by MODEL.TRANSFORMER_TYPE, with MODEL.PRETRAIN_PATH loaded (or a loud warning)."""

import logging

from utils.registry import Registry

from .checkpoint import load_pretrained
from .vit import ReIDViT, build_vit

logger = logging.getLogger(__name__)

BACKBONE_REGISTRY = Registry("backbone")
for _name in ("ViT-B-16", "vit_base_patch16_224", "tiny_clip", "tiny_vit"):
    BACKBONE_REGISTRY.register(_name)(lambda cfg, _kind=_name: build_vit(cfg, _kind))


def build_backbone(cfg):
    """cfg -> ReIDViT with its pretrained weights; random init (warned) when PRETRAIN_PATH is
    empty.
    """
    backbone = BACKBONE_REGISTRY.get(cfg.MODEL.TRANSFORMER_TYPE)(cfg)
    path = cfg.MODEL.PRETRAIN_PATH
    if path:
        load_pretrained(backbone, path)
    else:
        logger.warning(
            "MODEL.PRETRAIN_PATH is empty: the %s backbone is RANDOMLY INITIALISED; "
            "pass MODEL.PRETRAIN_PATH <file> (e.g. OpenAI's ViT-B-16.pt) to start from pretrained "
            "weights",
            cfg.MODEL.TRANSFORMER_TYPE,
        )
    return backbone


__all__ = ["BACKBONE_REGISTRY", "ReIDViT", "build_backbone", "load_pretrained"]
