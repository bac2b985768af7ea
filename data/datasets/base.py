"""Records, split containers, the dataset registry and the helpers every dataset shares.

A dataset module knows its folder layout and file-name rule; it returns `Record`s (paths and labels,
no tensors). Problems found while scanning (missing folders, missing sibling modality files, names
that do not parse) are collected in a list, so `tools/check_dataset.py` can report all of them at
once, while `build_dataset` stops on them with an error that lists them.
"""

import logging
import os
import random
from dataclasses import dataclass, field

from utils.registry import Registry

logger = logging.getLogger(__name__)

DATASET_REGISTRY = Registry("dataset")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(ValueError):
    """A dataset folder that cannot be used; the message names the layout or the files."""


@dataclass(frozen=True)
class Record:
    """One aligned triplet.

    files: modality name (cfg.INPUT.MODALITIES) -> image path. For RGBNT100 the three paths are the
        same 768x128 strip and `strip_index[modality]` (0, 1, 2) says which 256-wide third to crop;
        `strip_index` is empty for datasets with one file per modality.
    pid: relabelled 0..P-1 in train, the raw id in query / gallery / validation splits.
    camid: 0-based camera. sceneid: MSVR310 scene, -1 elsewhere. key: a path naming the sample.
    """

    files: dict
    pid: int
    camid: int
    sceneid: int = -1
    key: str = ""
    strip_index: dict = field(default_factory=dict)


@dataclass
class DatasetSplits:
    """Everything a run needs to know about its data; see docs/ARCHITECTURE.md (data)."""

    name: str
    train: list
    query: list
    gallery: list
    val_query: list = field(default_factory=list)
    val_gallery: list = field(default_factory=list)
    num_train_pids: int = 0
    num_cameras: int = 0
    protocol: str = "market"


def list_images(folder):
    """Sorted image file names directly inside `folder` (other files are ignored)."""
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))


def missing_folders(folders, layout):
    """Problems for the folders that do not exist; each names the expected layout."""
    return [f"missing folder {f}; expected layout: {layout}"
            for f in folders if not os.path.isdir(f)]


def scan_modality_folders(mod_dirs, modalities, parse, problems, **record_kw):
    """Records from parallel modality folders that hold the same file names.

    mod_dirs: one folder per modality (in `modalities` order). parse(name) -> (pid, camid, sceneid)
    or raises ValueError. A name missing from any sibling folder, or one that does not parse, is
    appended to `problems` (naming the file) and left out of the records.
    """
    names = [set(list_images(d)) for d in mod_dirs]
    records = []
    for name in sorted(set().union(*names)):
        path0 = os.path.join(mod_dirs[0], name)
        missing = [os.path.join(d, name) for d, ns in zip(mod_dirs, names) if name not in ns]
        if missing:
            have = next(os.path.join(d, name) for d, ns in zip(mod_dirs, names) if name in ns)
            problems.extend(f"missing sibling modality file {m} (of {have})" for m in missing)
            continue
        try:
            pid, camid, sceneid = parse(name)
        except ValueError as e:
            problems.append(f"file name does not parse: {path0}: {e}")
            continue
        files = {m: os.path.join(d, name) for m, d in zip(modalities, mod_dirs)}
        records.append(Record(files, pid, camid, sceneid, key=path0, **record_kw))
    return records


def relabel(records):
    """Train records with ids mapped to 0..P-1 in sorted order of the raw ids."""
    mapping = {p: i for i, p in enumerate(sorted({r.pid for r in records}))}
    return [_replace(r, pid=mapping[r.pid]) for r in records]


def _replace(record, **kw):
    values = {k: getattr(record, k) for k in record.__dataclass_fields__}
    values.update(kw)
    return Record(**values)


def split_validation(train, fraction, seed):
    """Hold out round(fraction * P) train ids (at least 1) as a validation split.

    The held-out ids are drawn with random.Random(seed) from the sorted raw ids, so the split is
    fixed by SOLVER.SEED. Rule: for each held-out id and camera, the first image (in path order) is
    a query; every other image of the id goes to the gallery. Ids with a single camera give
    queries without a cross-camera match; the evaluator skips those, as it does on the test set.
    Returns (train_rest, val_query, val_gallery) with raw ids; train_rest is not yet relabelled.
    """
    pids = sorted({r.pid for r in train})
    n_val = max(1, int(round(fraction * len(pids))))
    if n_val >= len(pids):
        raise DatasetError(
            f"DATASETS.VAL_FRACTION {fraction} would hold out all {len(pids)} train ids"
        )
    held = set(random.Random(seed).sample(pids, n_val))
    rest = [r for r in train if r.pid not in held]
    seen, query, gallery = set(), [], []
    for r in sorted((r for r in train if r.pid in held), key=lambda r: r.key):
        if (r.pid, r.camid) in seen:
            gallery.append(r)
        else:
            seen.add((r.pid, r.camid))
            query.append(r)
    return rest, query, gallery


def split_table(splits):
    """Rows (split, ids, triplets, cameras) for every non-empty split, as one aligned text table."""
    rows = [("split", "ids", "triplets", "cameras")]
    for name in ("train", "query", "gallery", "val_query", "val_gallery"):
        recs = getattr(splits, name)
        if recs or name in ("train", "query", "gallery"):
            rows.append((name, len({r.pid for r in recs}), len(recs), len({r.camid for r in recs})))
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    lines = ["  ".join(str(v).rjust(w) if i else str(v).ljust(w)
                       for i, (v, w) in enumerate(zip(row, widths))) for row in rows]
    return f"{splits.name} ({splits.protocol} protocol, {splits.num_cameras} cameras)\n" + \
        "\n".join(lines)
