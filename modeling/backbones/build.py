"""build_backbone(cfg): the registered backbone type, with MODEL.PRETRAIN_PATH loaded."""

import logging

from .checkpoint import load_pretrained
from .specs import backbone_spec

logger = logging.getLogger(__name__)


def build_backbone(cfg):
    """cfg -> ReIDViT with its pretrained weights; random init (warned) when PRETRAIN_PATH is
    empty.
    """
    backbone = backbone_spec(cfg)(cfg)
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
