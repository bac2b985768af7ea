"""Validate a dataset folder before a long run: prints the split table, lists every problem.

    python tools/check_dataset.py --config_file configs/RGBNT201/DeMo_SDTPS.yml \
        DATASETS.ROOT_DIR <root>

Exit status 0 when the folder is usable, 1 when any problem was found (each one is listed with its
file path: missing folders with the expected layout, missing sibling modality files, names that do
not parse, unreadable or truncated images, which are found by fully decoding every file).
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
    splits, problems = find_problems(root, name, cfg.INPUT.MODALITIES, decode=not args.no_decode)
    print(split_table(splits))
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print(f"  {p}")
        return 1
    print("\nOK: no problems found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
