"""Dataset scanning, building and checking; `build_dataset(cfg)` is the entry point.

Importing this package registers RGBNT201, RGBNT100, MSVR310 and WMVEID863 in `DATASET_REGISTRY`.
A registered class has `num_cameras`, `layout` (text for error messages), `scan(root, modalities)`
and either a fixed `protocol` or `choose_protocol(parts)`, which picks it from the scanned records.
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from . import msvr310, rgbnt100, rgbnt201, wmveid863  # noqa: F401  (registration)
from .base import (
    DATASET_REGISTRY,
    DatasetError,
    DatasetSplits,
    Record,
    relabel,
    split_table,
    split_validation,
)

logger = logging.getLogger(__name__)
_MAX_LISTED = 20


def scan_dataset(root, name, modalities):
    """-> (DatasetSplits with raw train ids, problems). Never raises for bad data; lists it."""
    ds = DATASET_REGISTRY.get(name)
    parts, problems = ds.scan(root, tuple(modalities))
    protocol = ds.choose_protocol(parts) if hasattr(ds, "choose_protocol") else ds.protocol
    splits = DatasetSplits(name, parts["train"], parts["query"], parts["gallery"],
                           num_cameras=ds.num_cameras, protocol=protocol)
    splits.num_train_pids = len({r.pid for r in splits.train})
    for split in ("train", "query", "gallery"):
        if not problems and not getattr(splits, split):
            problems.append(f"{name}: the {split} split holds no images; expected: {ds.layout}")
    return splits, problems


def build_dataset(cfg):
    """DatasetSplits for cfg.DATASETS.NAMES under cfg.DATASETS.ROOT_DIR; logs the split table.

    Train ids are relabelled 0..P-1 (after the optional validation split of DATASETS.VAL_FRACTION of
    the train ids, drawn with SOLVER.SEED); query, gallery and validation ids keep raw values.
    Raises DatasetError listing the problems of a bad folder (run tools/check_dataset.py for all).
    """
    name = cfg.DATASETS.NAMES
    splits, problems = scan_dataset(cfg.DATASETS.ROOT_DIR, name, cfg.INPUT.MODALITIES)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        extra = len(problems) - _MAX_LISTED
        more = f"\n  ... and {extra} more" if extra > 0 else ""
        raise DatasetError(f"{name} under {os.path.abspath(cfg.DATASETS.ROOT_DIR)}: "
                           f"{len(problems)} problem(s):\n  {listed}{more}\n"
                           "(tools/check_dataset.py lists every problem)")
    train = splits.train
    if cfg.DATASETS.VAL_FRACTION > 0:
        train, splits.val_query, splits.val_gallery = split_validation(
            train, cfg.DATASETS.VAL_FRACTION, cfg.SOLVER.SEED)
    splits.train = relabel(train)
    splits.num_train_pids = len({r.pid for r in splits.train})
    logger.info("dataset\n%s", split_table(splits))
    return splits


def read_images(record):
    """{modality: RGB PIL image} of a record, fully decoded; DatasetError naming a bad file.

    RGBNT100 strips are opened once and cut into thirds (`record.strip_index`).
    """
    opened = {}
    out = {}
    for mod, path in record.files.items():
        if path not in opened:
            try:
                with Image.open(path) as img:
                    opened[path] = img.convert("RGB")
            except (OSError, ValueError, SyntaxError) as e:
                raise DatasetError(f"cannot read image {path}: {e}") from e
        img = opened[path]
        if record.strip_index:
            third = img.width // 3
            i = record.strip_index[mod]
            img = img.crop((i * third, 0, (i + 1) * third, img.height))
        out[mod] = img
    return out


def _decode_problem(path):
    try:
        with Image.open(path) as img:
            img.load()
    except Exception as e:  # noqa: BLE001  (any decoder failure is a problem to report)
        return f"unreadable or truncated image {path}: {e}"
    return None


def find_problems(root, name, modalities, decode=True, workers=None):
    """Scan a dataset root and return (DatasetSplits, every problem found).

    With decode=True every image file is fully decoded (PIL `load()`), which finds truncated JPEGs
    that opening alone misses. Threads are used because PIL releases the GIL while decoding.
    """
    splits, problems = scan_dataset(root, name, modalities)
    if decode:
        recs = splits.train + splits.query + splits.gallery
        paths = sorted({p for r in recs for p in r.files.values()})
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            problems += [p for p in pool.map(_decode_problem, paths) if p]
    return splits, problems


__all__ = ["DATASET_REGISTRY", "DatasetError", "DatasetSplits", "Record", "build_dataset",
           "find_problems", "read_images", "scan_dataset", "split_table"]
