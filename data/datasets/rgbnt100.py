"""RGBNT100 (vehicles): RGBNT100/rgbir/{bounding_box_train,bounding_box_test,query}/<name>.jpg.

Names look like 0561_c0001_006.jpg. Each file is one strip, RGB | NI | TI side by side (768x128 in
the real data, 256 wide each); the loader crops the thirds, in that order, onto the configured
modality names. Id = the integer before `_c`; camera = the integer after `_c` (4 digits in the real
files, any number accepted), minus 1 (8 cameras). Market protocol.

Strip geometry: three equal parts, each PART_ASPECT (2) times as wide as high, i.e. width = 6 x
height (768x128, or a strip scaled as a whole). Any other width is refused when the strip is read:
cut into thirds it would shift or mix the modalities (a single 256x128 image would give three
slivers of one modality).
"""

import os
import re

from .base import DATASET_REGISTRY, Record, list_images, missing_folders

_NAME = re.compile(r"^(\d+)_c(\d+)_")
SPLITS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}
LAYOUT = "RGBNT100/rgbir/{bounding_box_train,bounding_box_test,query}/<id>_c<cam>_<n>.jpg"
PART_ASPECT = 2  # width / height of each modality's part: 256 / 128 in the real strips


def strip_problem(path, width, height):
    """None for a strip of the expected geometry (module docstring), else the one-line reason."""
    want = 3 * PART_ASPECT * height
    if width == want:
        return None
    return (
        f"RGBNT100 strip {path} is {width}x{height} (W x H): a strip is RGB | NI | TI side by "
        f"side, three parts each {PART_ASPECT}x as wide as high (768x128 in the real data), "
        f"so a strip {height} high must be {want} wide; re-save it as three "
        f"{PART_ASPECT * height}x{height} parts"
    )


def parse_name(name):
    """'0561_c0001_006.jpg' -> (561, 0, -1): (pid, 0-based camera, scene). ValueError otherwise."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"expected <id>_c<cam>_<n>, e.g. 0561_c0001_006.jpg, got {name!r}")
    cam = int(m.group(2))
    if not 1 <= cam <= RGBNT100.num_cameras:
        raise ValueError(f"camera {cam} outside 1..{RGBNT100.num_cameras} in {name!r}")
    return int(m.group(1)), cam - 1, -1


@DATASET_REGISTRY.register("RGBNT100")
class RGBNT100:
    """Scanner of the RGBNT100 folder; see the module docstring for the layout."""

    num_cameras = 8
    protocol = "market"
    layout = LAYOUT

    @staticmethod
    def scan(root, modalities):
        """-> ({"train", "query", "gallery": [Record]}, problems) with raw ids."""
        base = os.path.join(root, "RGBNT100", "rgbir")
        dirs = {s: os.path.join(base, sub) for s, sub in SPLITS.items()}
        problems = missing_folders(dirs.values(), LAYOUT)
        if problems:
            return {s: [] for s in SPLITS}, problems
        out = {}
        for split, folder in dirs.items():
            out[split] = []
            for name in list_images(folder):
                path = os.path.join(folder, name)
                try:
                    pid, camid, scene = parse_name(name)
                except ValueError as e:
                    problems.append(f"file name does not parse: {path}: {e}")
                    continue
                files = {m: path for m in modalities}
                thirds = {m: i for i, m in enumerate(modalities)}
                out[split].append(Record(files, pid, camid, scene, key=path, strip_index=thirds))
        return out, problems
