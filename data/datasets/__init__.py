"""Dataset scanning, building and checking; `build_dataset(cfg)` is the entry point.

Importing this package registers the dataset of each module here in `DATASET_REGISTRY`, the one
list of DATASETS.NAMES choices (config validation asks it).
A registered class has `num_cameras`, `layout` (text for error messages), `scan(root, modalities)`
and either a fixed `protocol` or `choose_protocol(parts)`, which picks it from the scanned records.
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from . import msvr310, rgbnt100, rgbnt201, wmveid863  # noqa: F401  (registration)
from .base import (
    CONVERTED_MODES,
    DATASET_REGISTRY,
    DatasetError,
    DatasetSplits,
    Record,
    duplicate_names,
    relabel,
    split_table,
    split_validation,
    to_rgb,
    unmatched_queries,
)

logger = logging.getLogger(__name__)
_MAX_LISTED = 20
_MAX_NAMED = 3  # sample names quoted in a note


def scan_dataset(root, name, modalities):
    """-> (DatasetSplits with raw train ids, problems). Never raises for bad data; lists it."""
    ds = DATASET_REGISTRY.get(name)
    parts, problems = ds.scan(root, tuple(modalities))
    problems += duplicate_names(parts)
    protocol = ds.choose_protocol(parts) if hasattr(ds, "choose_protocol") else ds.protocol
    splits = DatasetSplits(
        name,
        parts["train"],
        parts["query"],
        parts["gallery"],
        num_cameras=ds.num_cameras,
        protocol=protocol,
    )
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
        raise DatasetError(
            f"{name} under {os.path.abspath(cfg.DATASETS.ROOT_DIR)}: "
            f"{len(problems)} problem(s):\n  {listed}{more}\n"
            "(tools/check_dataset.py lists every problem)"
        )
    train = splits.train
    if cfg.DATASETS.VAL_FRACTION > 0:
        train, splits.val_query, splits.val_gallery = split_validation(
            train, cfg.DATASETS.VAL_FRACTION, cfg.SOLVER.SEED
        )
    splits.train = relabel(train)
    splits.num_train_pids = len({r.pid for r in splits.train})
    logger.info("dataset\n%s", split_table(splits))
    return splits


def _open_rgb(path):
    """The file at `path`, fully decoded, as 8-bit RGB (`to_rgb`); DatasetError naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            img = to_rgb(img, path)
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001  (any decoder failure names the file)
        raise DatasetError(f"unreadable or truncated image {path}: {e}") from e
    return img, mode


def read_images(record):
    """{modality: RGB PIL image} of a record, fully decoded; DatasetError naming a bad file.

    Non-RGB modes are converted by `to_rgb` (16-bit scaled, alpha composited) or refused.
    RGBNT100 strips are opened once, checked (`rgbnt100.strip_problem`: width = 6 x height) and
    cut into thirds (`record.strip_index`).
    """
    opened = {}
    out = {}
    for mod, path in record.files.items():
        if path not in opened:
            opened[path] = _open_rgb(path)[0]
            if record.strip_index:
                problem = rgbnt100.strip_problem(path, *opened[path].size)
                if problem:
                    raise DatasetError(problem)
        img = opened[path]
        if record.strip_index:
            third = img.width // 3
            i = record.strip_index[mod]
            img = img.crop((i * third, 0, (i + 1) * third, img.height))
        out[mod] = img
    return out


def _image_check(item):
    """(problem or None, mode) of one file; item = (path, is an RGBNT100 strip)."""
    path, strip = item
    try:
        img, mode = _open_rgb(path)
    except DatasetError as e:
        return str(e), None
    return (rgbnt100.strip_problem(path, *img.size) if strip else None), mode


def find_problems(root, name, modalities, decode=True, workers=None, notes=None):
    """Scan a dataset root and return (DatasetSplits, every problem found).

    With decode=True every image file is fully decoded and converted as the loaders do
    (`read_images`): that finds truncated JPEGs that opening alone misses, refused modes and
    RGBNT100 strips of the wrong width. Threads are used because PIL releases the GIL while
    decoding. `notes`, a list, receives lines that do not make the folder unusable: images whose
    values change on the way to 8 bits (CONVERTED_MODES), ids only in query or only in the
    gallery, and queries without a valid gallery match.
    """
    splits, problems = scan_dataset(root, name, modalities)
    recs = splits.train + splits.query + splits.gallery
    modes = {}
    if decode:
        items = sorted({(p, bool(r.strip_index)) for r in recs for p in r.files.values()})
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            for (path, _), (problem, mode) in zip(items, pool.map(_image_check, items)):
                if problem:
                    problems.append(problem)
                if mode in CONVERTED_MODES:
                    modes.setdefault(mode, []).append(path)
    if notes is not None:
        notes += _notes(splits, modes)
    return splits, problems


def _notes(splits, modes):
    """The `notes` lines of find_problems; modes: {converted mode: [paths]}."""
    out = []
    for mode, paths in sorted(modes.items()):
        n = len(paths)
        out.append(
            f"{n} image{'s' * (n != 1)} of mode {mode} ({CONVERTED_MODES[mode]}), e.g. {paths[0]}"
        )
    q_ids, g_ids = {r.pid for r in splits.query}, {r.pid for r in splits.gallery}
    for ids, where in (
        (q_ids - g_ids, "only in query (their queries cannot match)"),
        (g_ids - q_ids, "only in the gallery (distractors)"),
    ):
        if ids:
            out.append(
                f"{len(ids)} test id{'s' * (len(ids) != 1)} {where}: "
                f"{', '.join(str(i) for i in sorted(ids))}"
            )
    lost = unmatched_queries(splits.query, splits.gallery, splits.protocol)
    if lost:
        rule = "same scene" if splits.protocol == "scene" else "same camera"
        names = ", ".join(splits.query[i].key for i in lost[:_MAX_NAMED])
        out.append(
            f"{len(lost)} of {len(splits.query)} queries have no valid gallery match "
            f"(same-id items all in the {rule}, or the id absent from the gallery) and are "
            f"left out of the metrics, e.g. {names}"
        )
    return out


__all__ = [
    "DATASET_REGISTRY",
    "DatasetError",
    "DatasetSplits",
    "Record",
    "build_dataset",
    "find_problems",
    "read_images",
    "scan_dataset",
    "split_table",
    "to_rgb",
    "unmatched_queries",
]
