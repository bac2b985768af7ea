"""Training loop, hooks, the evaluation path and run set-up."""

from .evaluator import Evaluator, evaluate, evaluate_weights, extract_features
from .hooks import HookBase
from .trainer import NonFiniteLossError, Trainer

__all__ = [
    "Trainer",
    "Evaluator",
    "HookBase",
    "NonFiniteLossError",
    "evaluate",
    "evaluate_weights",
    "extract_features",
]
