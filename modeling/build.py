"""build_model(cfg, num_classes, num_cameras) -> MultiModalReID, wired by the config switches."""

import logging

from .backbones import build_backbone
from .fusion.demo import ATM, HDM, PIFE
from .fusion.sdtps import MultiModalSDTPS
from .meta_arch import MultiModalReID

logger = logging.getLogger(__name__)


def build_model(cfg, num_classes, num_cameras):
    """The model of SPEC.md section 2. N, K and N_c follow from the built backbone's real grid."""
    m = cfg.MODEL
    if m.USE_SDTPS and (m.HDM or m.ATM):
        raise ValueError(
            "MODEL.USE_SDTPS is exclusive with MODEL.HDM / MODEL.ATM; load the config "
            "with config.load_config, which turns them off"
        )
    backbone = build_backbone(cfg)
    dim = backbone.out_dim
    n_mod = len(cfg.INPUT.MODALITIES)
    pife = PIFE(dim, n_mod) if m.GLOBAL_LOCAL else None
    hdm = HDM(dim) if m.HDM else None
    atm = ATM(dim, m.HEAD) if m.ATM else None
    sdtps = None
    if m.USE_SDTPS:
        sdtps = MultiModalSDTPS(
            dim,
            backbone.num_patches,
            m.SDTPS_SPARSE_RATIO,
            m.SDTPS_AGGR_RATIO,
            m.SDTPS_BETA,
            m.SDTPS_USE_GUMBEL,
            m.SDTPS_GUMBEL_TAU,
            n_mod,
            gumbel_mode=m.SDTPS_GUMBEL_MODE,
            score_grad=m.SDTPS_SCORE_GRAD,
        )
    model = MultiModalReID(cfg, backbone, pife, hdm, atm, sdtps, num_classes, num_cameras)
    logger.info(
        "model: %s backbone, %d patches (grid %dx%d), C=%d, fusion %s, %.2f M trainable",
        m.TRANSFORMER_TYPE,
        backbone.num_patches,
        *backbone.grid_size,
        dim,
        fusion_name(model),
        count_trainable(model) / 1e6,
    )
    if sdtps is not None:
        logger.info(
            "SDTPS tokens per modality: %d -> %d -> %d + 1",
            sdtps.num_patches,
            sdtps.keep,
            sdtps.num_out,
        )
    return model


def fusion_name(model):
    if model.sdtps is not None:
        return "SDTPS"
    if model.atm is not None:
        return "HDM+ATM"
    return "HDM" if model.hdm is not None else "none"


def count_trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
