"""Records, split containers, the dataset registry and the helpers every dataset shares.

A dataset module knows its folder layout and file-name rule; it returns `Record`s (paths and labels,
no tensors). Problems found while scanning (missing folders, missing sibling modality files, names
that do not parse) are collected in a list, so `tools/check_dataset.py` can report all of them at
once, while `build_dataset` stops on them with an error that lists them.

Pixels: `to_rgb` turns a decoded file of any mode the datasets can hold into 8-bit RGB without
clipping or truncating values (see its docstring for the rules), or refuses it by name.
"""

import logging
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

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


# Modes read as they are (8-bit colour or gray, palette without transparency, CMYK, 1-bit): PIL's
# own conversion to RGB is exact for them.
_DIRECT = ("RGB", "L", "1", "P", "CMYK", "YCbCr", "RGBX")
# Modes with an alpha channel: composited over black, because the colour under a transparent
# pixel is undefined (encoders store black, white or leftovers there).
_ALPHA = ("RGBA", "LA", "PA", "RGBa")
# Unsigned 16-bit gray, in PIL's byte-order spellings.
_UINT16 = ("I;16", "I;16B", "I;16L", "I;16N")
# Modes whose pixels change value on the way to 8 bits; tools/check_dataset.py names the files.
CONVERTED_MODES = {
    **{m: "16-bit, scaled 0..65535 -> 0..255" for m in _UINT16},
    "I": "32-bit integer, read as 16-bit: 0..65535 -> 0..255",
    "F": "32-bit float, 0..1 -> 0..255",
    **{m: "alpha, composited over black" for m in _ALPHA},
}


def to_rgb(img, path):
    """A decoded PIL image of any supported mode -> 8-bit RGB PIL image; DatasetError otherwise.

    16-bit gray (I;16, I;16B, ...): scaled by the type's range, v * 255 / 65535 rounded (65535 ->
    255, 32768 -> 128; PIL's convert("RGB") clips everything above 255 to white). 32-bit integer
    ("I", which older Pillow also gives for 16-bit PNGs): read as 16-bit when all values lie in
    0..65535, else refused. 32-bit float ("F"): 0..1 -> 0..255 when all values lie in [0, 1],
    else refused (the mapping of other ranges, e.g. temperatures, is unknown). Alpha modes, and
    palettes with a transparent entry: composited over black. Other modes are refused, naming
    `path`.
    """
    mode = img.mode
    if mode == "P" and "transparency" in img.info:
        mode, img = "RGBA", img.convert("RGBA")
    if mode == "RGB":
        return img
    if mode in _DIRECT:
        return img.convert("RGB")
    if mode in _ALPHA:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint32)
        rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
        return Image.fromarray(rgb.astype(np.uint8), "RGB")
    if mode in _UINT16 or mode == "I":
        x = np.asarray(img).astype(np.int64)
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise DatasetError(
                f"{path}: 32-bit integer image with values {lo}..{hi}, outside "
                "the 16-bit range 0..65535 it is read in; save it as 8-bit or "
                "16-bit"
            )
        return _gray(((x * 255 + 32767) // 65535).astype(np.uint8))
    if mode == "F":
        x = np.asarray(img, dtype=np.float64)
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if not (0.0 <= lo and hi <= 1.0):  # also refuses NaN
            raise DatasetError(
                f"{path}: 32-bit float image with values {lo:g}..{hi:g}, outside "
                "0..1 (the only float range read); save it as 8-bit or 16-bit"
            )
        return _gray(np.rint(x * 255).astype(np.uint8))
    raise DatasetError(
        f"{path}: image mode {mode} is not supported; save it as 8-bit RGB or "
        "grayscale (16-bit gray, palette, alpha and CMYK are read too)"
    )


def _gray(x):
    """(H, W) uint8 -> RGB PIL image of three equal channels."""
    return Image.fromarray(x, "L").convert("RGB")


def list_images(folder):
    """Sorted image file names directly inside `folder` (other files are ignored)."""
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))


def missing_folders(folders, layout):
    """Problems for the folders that do not exist; each names the expected layout."""
    return [
        f"missing folder {f}; expected layout: {layout}" for f in folders if not os.path.isdir(f)
    ]


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


def duplicate_names(parts):
    """Problems for samples whose name (file name without extension) repeats within a split, or is
    in train and in query / gallery. parts: {split: [Record]}; a query and a gallery holding the
    same sample (RGBNT201: they are one split) is the protocol's business, not a duplicate."""
    problems = []
    where = {}
    for split, recs in parts.items():
        names = defaultdict(list)
        for r in recs:
            names[_stem(r.key)].append(r.key)
        for name, keys in sorted(names.items()):
            if len(keys) > 1:
                problems.append(
                    f"duplicate sample name {name} in the {split} split: "
                    f"{', '.join(keys)}; keep one of them"
                )
        where[split] = names
    test = {n: k for split in ("query", "gallery") for n, k in where.get(split, {}).items()}
    for name, keys in sorted(where.get("train", {}).items()):
        if name in test:
            problems.append(
                f"sample name {name} is in train and in test: {keys[0]} and "
                f"{test[name][0]}; train and test must not share samples"
            )
    return problems


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def unmatched_queries(query, gallery, protocol):
    """Indices (sorted) of the queries that have no valid gallery match under `protocol`: every
    same-id gallery item is removed (market: same camera; scene: same scene), or the id is not in
    the gallery. `utils.metrics.evaluate_rank` skips exactly these queries."""
    field_ = "sceneid" if protocol == "scene" else "camid"
    per_id = Counter(g.pid for g in gallery)
    per_id_group = Counter((g.pid, getattr(g, field_)) for g in gallery)
    return [
        i
        for i, q in enumerate(query)
        if per_id[q.pid] - per_id_group[(q.pid, getattr(q, field_))] <= 0
    ]


def split_table(splits):
    """Rows (split, ids, triplets, cameras) for every non-empty split, as one aligned text table."""
    rows = [("split", "ids", "triplets", "cameras")]
    for name in ("train", "query", "gallery", "val_query", "val_gallery"):
        recs = getattr(splits, name)
        if recs or name in ("train", "query", "gallery"):
            rows.append((name, len({r.pid for r in recs}), len(recs), len({r.camid for r in recs})))
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(row, widths))
        )
        for row in rows
    ]
    return (
        f"{splits.name} ({splits.protocol} protocol, {splits.num_cameras} cameras)\n"
        + "\n".join(lines)
    )
