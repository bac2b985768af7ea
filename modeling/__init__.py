"""The model package: `build_model(cfg, num_classes, num_cameras)` and `select_pattern(feats,
p)`.

The names are imported on first use (PEP 562), so `modeling.backbones.specs`, the registry of
backbone types that config validation reads, loads without torch and timm.
"""

from utils.lazy import lazy_getattr

# name -> the submodule that defines it
_LAZY = {
    "build_model": "build",
    "count_trainable": "build",
    "select_pattern": "meta_arch",
    "MultiModalReID": "meta_arch",
    "convert_demo_state_dict": "convert",
    "load_weights": "convert",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
