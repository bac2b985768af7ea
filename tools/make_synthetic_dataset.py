"""Write learnable synthetic RGBNT201 / RGBNT100 / MSVR310 / WMVEID863 sets in their real layouts.

    python tools/make_synthetic_dataset.py datasets_synth --dataset all --scale 0.1
    python tools/make_synthetic_dataset.py datasets_synth --dataset RGBNT201 --scale 1

--scale 1 writes the real id and image counts at the real image sizes (WMVEID863: MSVR310's
counts); smaller scales shrink the id and image counts (with floors that keep the smallest sets
usable). See data/synthetic.py.

A dataset folder that already holds the same set (its synthetic.json records the same
parameters) is kept, so scripts may call this before every use; one that holds another set, or
was not written by this tool, is an error naming the file and the values.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.synthetic import DATASETS, check_params, make_synthetic  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="folder that will hold the dataset folders (DATASETS.ROOT_DIR)")
    ap.add_argument("--dataset", default="all", choices=[*DATASETS, "all"])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the real counts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-ids", type=int, default=None, help="override the train id count")
    ap.add_argument("--test-ids", type=int, default=None, help="override the test id count")
    ap.add_argument("--images-per-id", type=int, default=None, help="override images per id")
    ap.add_argument(
        "--size-factor",
        type=float,
        default=1.0,
        help="multiply the real image size (0.25: 64x32 persons)",
    )
    ap.add_argument(
        "--hardness",
        type=float,
        default=0.0,
        help="cue ambiguity, 0-1 (0: the demo's set; 0.5-1: mAP stays below 100)",
    )
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = ap.parse_args(argv)
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    params = dict(
        scale=args.scale,
        seed=args.seed,
        train_ids=args.train_ids,
        test_ids=args.test_ids,
        images_per_id=args.images_per_id,
        size_factor=args.size_factor,
        hardness=args.hardness,
    )
    for name in names:
        target = os.path.join(args.root, name)
        try:
            if check_params(args.root, name, **params):
                print(f"{name}: {target} already holds this set (synthetic.json); kept")
                continue
        except ValueError as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 1
        start = time.time()
        counts = make_synthetic(args.root, name, workers=args.workers, **params)
        summary = ", ".join(
            f"{s}: {c['ids']} ids / {c['images']} images" for s, c in counts.items()
        )
        print(f"{name} -> {target} ({summary}) in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
