"""Validate a dataset folder before a long run: prints the split table, lists every problem.

    python tools/check_dataset.py --config_file configs/RGBNT201/DeMo_SDTPS.yml \
        DATASETS.ROOT_DIR <root>

Exit status 0 when the folder is usable, 1 when any problem was found (each one is listed with its
file path: missing folders with the expected layout, missing sibling modality files, names that do
not parse, MSVR310 files under another id's folder, duplicate sample names, and - found by fully
decoding every file - unreadable or truncated images, image modes that cannot be read and
RGBNT100 strips whose width is not 6 x their height). Notes that leave the folder usable follow:
images converted on the way to 8 bits (16-bit, alpha), test ids only in query or only in the
gallery, and queries without a valid gallery match (left out of the metrics).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import ConfigError, load_config  # noqa: E402
from data.datasets import find_problems, split_table  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config_file", "--config-file", dest="config_file", default="")
    ap.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster)")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config_file, args.opts)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    root, name = cfg.DATASETS.ROOT_DIR, cfg.DATASETS.NAMES
    print(f"checking {name} under {os.path.abspath(root)}")
    notes = []
    splits, problems = find_problems(
        root, name, cfg.INPUT.MODALITIES, decode=not args.no_decode, notes=notes
    )
    print(split_table(splits))
    if notes:
        print(f"\n{len(notes)} note(s):")
        for n in notes:
            print(f"  {n}")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print(f"  {p}")
        return 1
    print("\nOK: no problems found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
