from .optimizer import build_optimizer, param_groups
from .scheduler import build_scheduler

__all__ = ["build_optimizer", "build_scheduler", "param_groups"]
