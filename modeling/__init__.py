"""The model package: `build_model(cfg, num_classes, num_cameras)` and `select_pattern(feats,
p)`.
"""

from .build import build_model, count_trainable
from .convert import convert_demo_state_dict, load_weights
from .meta_arch import MultiModalReID, select_pattern

__all__ = [
    "build_model",
    "count_trainable",
    "select_pattern",
    "MultiModalReID",
    "convert_demo_state_dict",
    "load_weights",
]
