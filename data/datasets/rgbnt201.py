"""RGBNT201 (persons): RGBNT201/{train_171,test}/{RGB,NI,TI}/000123_cam3_0_05.jpg.

The three modality folders hold the same file names. Person id = the first field; camera = the digit
after `cam`, minus 1 (4 cameras). Query = gallery = the whole test split (market protocol: the
evaluator removes same-id same-camera gallery items).
"""

import os
import re

from .base import DATASET_REGISTRY, missing_folders, scan_modality_folders

_NAME = re.compile(r"^(\d+)_cam(\d+)_")
FOLDERS = ("RGB", "NI", "TI")
SPLITS = {"train": "train_171", "test": "test"}
LAYOUT = "RGBNT201/{train_171,test}/{RGB,NI,TI}/<pid>_cam<k>_<x>_<n>.jpg"


def parse_name(name):
    """'000123_cam3_0_05.jpg' -> (123, 2, -1): (pid, 0-based camera, scene); else ValueError."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"expected <pid>_cam<k>_..., e.g. 000123_cam3_0_05.jpg, got {name!r}")
    cam = int(m.group(2))
    if not 1 <= cam <= RGBNT201.num_cameras:
        raise ValueError(f"camera {cam} outside 1..{RGBNT201.num_cameras} in {name!r}")
    return int(m.group(1)), cam - 1, -1


@DATASET_REGISTRY.register("RGBNT201")
class RGBNT201:
    """Scanner of the RGBNT201 folder; see the module docstring for the layout."""

    num_cameras = 4
    protocol = "market"
    layout = LAYOUT

    @staticmethod
    def scan(root, modalities):
        """-> ({"train", "query", "gallery": [Record]}, problems) with raw ids."""
        base = os.path.join(root, "RGBNT201")
        dirs = {s: [os.path.join(base, sub, f) for f in FOLDERS] for s, sub in SPLITS.items()}
        problems = missing_folders([d for ds in dirs.values() for d in ds], LAYOUT)
        if problems:
            return {"train": [], "query": [], "gallery": []}, problems
        train = scan_modality_folders(dirs["train"], modalities, parse_name, problems)
        test = scan_modality_folders(dirs["test"], modalities, parse_name, problems)
        return {"train": train, "query": test, "gallery": list(test)}, problems
