"""Data layer: dataset records, transforms, samplers and loaders (docs/ARCHITECTURE.md, `data`).

The loader builders are imported lazily (PEP 562): tools that only scan or write datasets
(`tools/check_dataset.py`, `tools/make_synthetic_dataset.py`) then start without importing torch
and timm, which takes seconds.
"""

from utils.lazy import lazy_getattr

from .datasets import DatasetError, DatasetSplits, Record, build_dataset, find_problems

__getattr__ = lazy_getattr(__name__, {"build_train_loader": "build", "build_test_loader": "build"})


__all__ = [
    "build_dataset",
    "build_train_loader",
    "build_test_loader",
    "Record",
    "DatasetSplits",
    "DatasetError",
    "find_problems",
]
