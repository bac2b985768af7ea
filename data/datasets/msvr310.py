"""MSVR310 (vehicles): MSVR310/{bounding_box_train,bounding_box_test,query3}/<id>/{vis,ni,th}/.

Names are VVVV_sSSS_vK_NNN.jpg: id = characters 0-3, scene = characters 6-8, camera = the digit K
after `_v` (0..7, not shifted). The three modality folders of an id hold the same names, and the id
folder is named by the id its files' names start with (a file under another id's folder is a
problem: which of the two is right cannot be told). Query is `query3`; the scene protocol removes
same-id same-scene gallery items (camera ignored).
"""

import os
import re

from .base import DATASET_REGISTRY, missing_folders, scan_modality_folders

_NAME = re.compile(r"^(\d{4})_s(\d{3})_v(\d)_")
FOLDERS = ("vis", "ni", "th")
SPLITS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query3"}
LAYOUT = (
    "MSVR310/{bounding_box_train,bounding_box_test,query3}/<id>/{vis,ni,th}/VVVV_sSSS_vK_NNN.jpg"
)


def parse_name(name):
    """'0012_s003_v5_041.jpg' -> (12, 5, 3): (pid, camera, scene). ValueError otherwise."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"expected VVVV_sSSS_vK_NNN, e.g. 0012_s003_v5_041.jpg, got {name!r}")
    cam = int(m.group(3))
    if cam >= MSVR310.num_cameras:
        raise ValueError(f"camera {cam} outside 0..{MSVR310.num_cameras - 1} in {name!r}")
    return int(m.group(1)), cam, int(m.group(2))


@DATASET_REGISTRY.register("MSVR310")
class MSVR310:
    """Scanner of the MSVR310 folder; see the module docstring for the layout."""

    num_cameras = 8
    protocol = "scene"
    layout = LAYOUT

    @staticmethod
    def scan(root, modalities):
        """-> ({"train", "query", "gallery": [Record]}, problems) with raw ids."""
        base = os.path.join(root, "MSVR310")
        dirs = {s: os.path.join(base, sub) for s, sub in SPLITS.items()}
        problems = missing_folders(dirs.values(), LAYOUT)
        if problems:
            return {s: [] for s in SPLITS}, problems
        out = {}
        for split, folder in dirs.items():
            out[split] = []
            for ident in sorted(os.listdir(folder)):
                id_dir = os.path.join(folder, ident)
                if not os.path.isdir(id_dir):
                    continue
                mod_dirs = [os.path.join(id_dir, f) for f in FOLDERS]
                gone = missing_folders(mod_dirs, LAYOUT)
                problems.extend(gone)
                if not gone:
                    recs = scan_modality_folders(mod_dirs, modalities, parse_name, problems)
                    out[split] += _in_own_folder(recs, ident, id_dir, problems)
        return out, problems


def _in_own_folder(records, ident, id_dir, problems):
    """The records whose id is the id folder's; a problem naming each other one."""
    kept = []
    for r in records:
        if ident.isdigit() and int(ident) == r.pid:
            kept.append(r)
        else:
            problems.append(
                f"id folder {id_dir} holds {r.key} of id {r.pid:04d} (its name's "
                f"first field): move it to the folder of its id, or rename it"
            )
    return kept
