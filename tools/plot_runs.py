"""Learning curves and the final mAP of finished runs, from their metrics.json files.

    python tools/plot_runs.py output/compare/RGBNT201-DeMo/seed_1 output/other_run
    python tools/plot_runs.py output/compare            # every run below the folder
    python tools/plot_runs.py runA runB --out pictures/

Runs in folders named seed_<s> are grouped by their parent folder (one colour per group, its mean
bold), other runs are groups of their own. Writes OUT/curves.png (loss terms and each evaluated
pattern's mAP against epoch) and OUT/final_map.png (final test mAP per group with its 95 %
interval; finished runs only). Needs matplotlib (pip install matplotlib).
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.run_plots import (  # noqa: E402
    MissingMatplotlib,
    group_stats,
    interval_bars,
    learning_curves,
    save,
)
from utils.run_records import METRICS_FILE, read_records, run_final  # noqa: E402


def find_runs(path):
    """The run folders at `path`: itself when it holds a metrics.json, else those below it (up to
    three levels, as in a study: OUT/<config>/seed_<s>/; best_test folders are not runs)."""
    if os.path.isfile(os.path.join(path, METRICS_FILE)):
        return [path]
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != "best_test")
        if root[len(path) :].count(os.sep) >= 3:
            dirs[:] = []
        if METRICS_FILE in files and root != path:
            found.append(root)
    return found


def group_name(run):
    run = os.path.normpath(run)
    if re.fullmatch(r"seed_\d+", os.path.basename(run)):
        return os.path.basename(os.path.dirname(run))
    return os.path.basename(run)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or folders of runs)")
    ap.add_argument("--out", default=".", help="folder for curves.png and final_map.png")
    args = ap.parse_args(argv)
    runs = []
    for path in args.runs:
        if not os.path.isdir(path):
            sys.stderr.write(f"plot_runs: {path} is not a folder\n")
            return 2
        found = find_runs(path)
        if not found:
            sys.stderr.write(f"plot_runs: no {METRICS_FILE} in or below {path}: not a run folder\n")
            return 2
        runs += [r for r in found if r not in runs]
    records, finals = {}, {}
    for run in runs:
        records.setdefault(group_name(run), []).append(read_records(run))
        final = run_final(run)
        if final is None:
            print(f"{run}: not finished (no model_final.pth or final test results): curves only")
        else:
            finals.setdefault(group_name(run), []).append(final)
    try:
        os.makedirs(args.out, exist_ok=True)
        written = [save(learning_curves(records), os.path.join(args.out, "curves.png"))]
        if finals:
            written.append(
                save(interval_bars(group_stats(finals)), os.path.join(args.out, "final_map.png"))
            )
    except MissingMatplotlib as e:
        sys.stderr.write(f"plot_runs: {e}\n")
        return 1
    except ValueError as e:
        sys.stderr.write(f"plot_runs: {e}\n")
        return 2
    print("written: " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
