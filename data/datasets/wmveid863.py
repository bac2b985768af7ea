"""WMVEID863 (vehicles: 863 ids, 8 views, RGB / NI / TI), in either of its two published layouts.

`DATASETS.NAMES WMVEID863` reads whichever of these two folders exists under DATASETS.ROOT_DIR
(both present is an error: the run would otherwise not say which set it evaluated):

- `WMVEID863/{train,query,test}/<vehicle id>/{vis,ni,th}/<name>.jpg` (the layout of the public
  WMVEID863 loaders). The id is the folder name (an integer); the three modality folders of an id
  hold the same file names. Camera (view) = the single digit after `v` in the name, 0..7 and not
  shifted, as in MSVR310 (`0001_s001_v1_000.jpg`: camera 1); scene = the digits after `s` where the
  name has them (scene 1 there). `test` is the gallery.
- `MSVWild863/{train,query,test}/{vis,ni,th}/<pid>_cam<k>_<...>.jpg` (the flat layout of DeMo's
  unregistered MSVWild863 loader): id = the first field, camera = k - 1 (k in 1..8: the framework's
  cameras are 0-based, as RGBNT201's `cam<k>` and RGBNT100's `c<k>` are shifted).

A `v` or `s` counts only where no letter precedes it (so `cam3` holds no scene), and the camera
digit must not be followed by another digit (`v12` is an error, not camera 1).

Protocol, chosen from the names (`choose_protocol`): when every name carries a scene, the scene
protocol (as MSVR310: gallery items of the query's id and scene are removed, cameras ignored);
when none does, the market protocol (same id and same camera removed), the rule of the public
WMVEID863 evaluation. A set where only some names carry a scene is an error naming the names in the
minority, since neither rule then applies to every query.
"""

import logging
import os
import re

from .base import DATASET_REGISTRY, list_images, missing_folders, scan_modality_folders

logger = logging.getLogger(__name__)

FOLDERS = ("vis", "ni", "th")
SPLITS = {"train": "train", "query": "query", "gallery": "test"}
NUM_CAMERAS = 8
NESTED, FLAT = "WMVEID863", "MSVWild863"
NESTED_LAYOUT = "WMVEID863/{train,query,test}/<id>/{vis,ni,th}/<...>_v<K>_<...>.jpg"
FLAT_LAYOUT = "MSVWild863/{train,query,test}/{vis,ni,th}/<pid>_cam<k>_<n>.jpg"
LAYOUT = f"{NESTED_LAYOUT} or {FLAT_LAYOUT}"

_VIEW = re.compile(r"(?<![A-Za-z])v(\d+)")
_SCENE = re.compile(r"(?<![A-Za-z])s(\d+)")
_FLAT = re.compile(r"^(\d+)_cam(\d+)_")


def _scene(stem, name):
    """Scene number of a file-name stem, -1 when it has none; ValueError when it has two."""
    found = _SCENE.findall(stem)
    if len(found) > 1:
        raise ValueError(f"more than one scene field (s<digits>) in {name!r}")
    return int(found[0]) if found else -1


def parse_nested(name, pid):
    """(name, id folder's integer) -> (pid, camera, scene); ValueError naming the rule otherwise.

    '0001_s003_v5_041.jpg' -> (pid, 5, 3); '0001_v5_041.jpg' -> (pid, 5, -1).
    """
    stem = os.path.splitext(name)[0]
    views = _VIEW.findall(stem)
    if len(views) != 1 or len(views[0]) != 1:
        raise ValueError(
            f"expected one view field v<K> (a single digit 0..{NUM_CAMERAS - 1}), "
            f"e.g. 0001_s001_v1_000.jpg, got {name!r}"
        )
    cam = int(views[0])
    if cam >= NUM_CAMERAS:
        raise ValueError(f"camera {cam} outside 0..{NUM_CAMERAS - 1} in {name!r}")
    return pid, cam, _scene(stem, name)


def parse_flat(name):
    """'000123_cam3_0_05.jpg' -> (123, 2, -1): (pid, 0-based camera, scene); else ValueError."""
    m = _FLAT.match(name)
    if not m:
        raise ValueError(f"expected <pid>_cam<k>_..., e.g. 000123_cam3_0_05.jpg, got {name!r}")
    cam = int(m.group(2))
    if not 1 <= cam <= NUM_CAMERAS:
        raise ValueError(f"camera {cam} outside 1..{NUM_CAMERAS} in {name!r}")
    return int(m.group(1)), cam - 1, _scene(os.path.splitext(name)[0], name)


def _scan_nested(base, modalities, problems):
    out = {}
    for split, sub in SPLITS.items():
        folder = os.path.join(base, sub)
        out[split] = []
        # An image directly in a split folder belongs to no id: named, not skipped silently.
        problems.extend(
            f"image outside an <id>/{{vis,ni,th}}/ folder: "
            f"{os.path.join(folder, f)}; expected layout: {NESTED_LAYOUT}"
            for f in list_images(folder)
        )
        for ident in sorted(os.listdir(folder)):
            id_dir = os.path.join(folder, ident)
            if not os.path.isdir(id_dir):
                continue
            if not ident.isdigit():
                hint = (
                    f" (the flat layout: name the dataset folder {FLAT}/ instead)"
                    if ident in FOLDERS
                    else ""
                )
                problems.append(
                    f"id folder name is not an integer: {id_dir}{hint}; expected "
                    f"layout: {NESTED_LAYOUT}"
                )
                continue
            mod_dirs = [os.path.join(id_dir, f) for f in FOLDERS]
            gone = missing_folders(mod_dirs, NESTED_LAYOUT)
            problems.extend(gone)
            if not gone:

                def parse(name, pid=int(ident)):
                    return parse_nested(name, pid)

                out[split] += scan_modality_folders(mod_dirs, modalities, parse, problems)
    return out


def _scan_flat(base, modalities, problems):
    dirs = {s: [os.path.join(base, sub, f) for f in FOLDERS] for s, sub in SPLITS.items()}
    problems.extend(missing_folders([d for ds in dirs.values() for d in ds], FLAT_LAYOUT))
    if problems:
        return {s: [] for s in SPLITS}
    return {
        s: scan_modality_folders(ds, modalities, parse_flat, problems) for s, ds in dirs.items()
    }


def _scene_problems(parts):
    """One problem per record on the minority side when only some names carry a scene."""
    recs = [r for split in SPLITS for r in parts[split]]
    with_scene = [r for r in recs if r.sceneid >= 0]
    if not with_scene or len(with_scene) == len(recs):
        return []
    without = [r for r in recs if r.sceneid < 0]
    if len(with_scene) <= len(without):
        minority, what, others = with_scene, "carries a scene (s<digits>)", len(without)
        rest = "do not"
    else:
        minority, what, others = without, "carries no scene (s<digits>)", len(with_scene)
        rest = "do"
    return [
        f"file name {what} while {others} other names {rest}; the evaluation protocol needs "
        f"scenes in all names or in none: {r.key}"
        for r in minority
    ]


@DATASET_REGISTRY.register("WMVEID863")
class WMVEID863:
    """Scanner of the WMVEID863 folder (or the flat MSVWild863 one); see the module docstring."""

    num_cameras = NUM_CAMERAS
    layout = LAYOUT

    @staticmethod
    def choose_protocol(parts):
        """'scene' when every record of {"train", "query", "gallery"} has a scene, else 'market'."""
        recs = [r for split in SPLITS for r in parts[split]]
        return "scene" if recs and all(r.sceneid >= 0 for r in recs) else "market"

    @staticmethod
    def scan(root, modalities):
        """-> ({"train", "query", "gallery": [Record]}, problems) with raw ids."""
        nested, flat = os.path.join(root, NESTED), os.path.join(root, FLAT)
        found = [p for p in (nested, flat) if os.path.isdir(p)]
        if len(found) == 2:
            return {s: [] for s in SPLITS}, [
                f"both {nested} and {flat} exist; DATASETS.NAMES WMVEID863 reads one of them: "
                "move one away, or point DATASETS.ROOT_DIR at a folder holding only the one to use"
            ]
        if not found:
            return {s: [] for s in SPLITS}, [
                f"missing folder {nested} (or {flat}); expected layout: {LAYOUT}"
            ]
        if found[0] == nested:
            problems = missing_folders(
                [os.path.join(nested, s) for s in SPLITS.values()], NESTED_LAYOUT
            )
            if problems:
                return {s: [] for s in SPLITS}, problems
            parts = _scan_nested(nested, modalities, problems)
        else:
            logger.info("WMVEID863: reading the flat layout %s", FLAT_LAYOUT)
            problems = []
            parts = _scan_flat(flat, modalities, problems)
        problems.extend(_scene_problems(parts))
        return parts, problems
