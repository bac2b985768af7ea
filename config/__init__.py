from .defaults import PATTERN_NAMES, get_cfg
from .validate import ConfigError, dump_config, feature_dim, load_config, translate_keys

__all__ = [
    "PATTERN_NAMES",
    "get_cfg",
    "load_config",
    "dump_config",
    "feature_dim",
    "translate_keys",
    "ConfigError",
]
