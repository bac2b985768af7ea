"""Training loop, hooks, the evaluation path and run set-up.

Its names are imported on first use (utils/lazy.py), so that tools/compare.py, which only plans
and starts runs, does not load the model and data code (torchvision and friends) to do it.
"""

from utils.lazy import lazy_getattr

__all__ = [
    "Trainer",
    "Evaluator",
    "HookBase",
    "NonFiniteLossError",
    "evaluate",
    "evaluate_weights",
    "extract_features",
]
__getattr__ = lazy_getattr(
    __name__,
    {
        "Trainer": "trainer",
        "NonFiniteLossError": "trainer",
        "Evaluator": "evaluator",
        "evaluate": "evaluator",
        "evaluate_weights": "evaluator",
        "extract_features": "evaluator",
        "HookBase": "hooks",
    },
)
