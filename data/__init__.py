"""Data layer: dataset records, transforms, samplers and loaders (docs/ARCHITECTURE.md, `data`)."""

from .build import build_test_loader, build_train_loader
from .datasets import DatasetError, DatasetSplits, Record, build_dataset, find_problems

__all__ = ["build_dataset", "build_train_loader", "build_test_loader", "Record", "DatasetSplits",
           "DatasetError", "find_problems"]
