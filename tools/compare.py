"""Train several configs with several seeds and compare them honestly: mean ± std, 95 % intervals,
and the t-test that fits the design, in Markdown, JSON and pictures.

    python tools/compare.py --config configs/RGBNT201/DeMo.yml \\
        --config configs/RGBNT201/DeMo_SDTPS.yml --seeds 1 2 3 4 5 --out output/compare/demo \\
        [KEY VALUE ...]

Every run is `train_net.py --config_file C SOLVER.SEED s OUTPUT_DIR OUT/<dataset>-<name>/seed_<s>
[KEY VALUE ...]`; a config's new runs share processes (`train_net.py --seeds`). A rerun of the
same command reuses finished runs, resumes killed ones and restarts the rest; --dry-run shows what
it would do. Output: OUT/compare.md, compare.json, compare_curves.png, compare_map.png
(docs/ACCURACY.md explains how to read them).
"""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine import compare, compare_report  # noqa: E402
from utils.logger import setup_logger  # noqa: E402
from utils.run_plots import MissingMatplotlib  # noqa: E402

logger = logging.getLogger("compare")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="a YAML config; give it once per config to compare",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        default=[],
        metavar="SEED",
        help="SOLVER.SEED of the runs of every config (KEY VALUE overrides may follow)",
    )
    p.add_argument(
        "--out", default="", help="the study's folder (or OUTPUT_DIR DIR; default output/compare)"
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="K",
        help=f"runs at once (default: 1 on the CPU, {compare.GPU_RUNS_PER_DEVICE} per GPU)",
    )
    p.add_argument(
        "--process-per-run",
        action="store_true",
        help="one train_net.py process per run (default: a config's new runs are dealt out over "
        "the --parallel processes, each training its seeds one after another, paying the "
        "imports, data index and compilation once)",
    )
    p.add_argument("--dry-run", action="store_true", help="show each run's state and stop")
    p.add_argument(
        "--keep-last",
        action="store_true",
        help="keep the resume checkpoint (last.pth) of finished runs (default: removed)",
    )
    p.epilog = "KEY VALUE overrides for every run may come anywhere among the options."
    # The overrides are what argparse does not know, so options may also follow them.
    args, rest = p.parse_known_args(argv)
    flags = [t for t in rest if t.startswith("--")]
    if flags:
        raise compare.StudyError(f"unknown option {flags[0]} (see --help)")
    # nargs="+" also takes the KEY VALUE pairs that follow the seeds
    n = next((i for i, s in enumerate(args.seeds) if not s.lstrip("-").isdigit()), len(args.seeds))
    args.opts, args.seeds = args.seeds[n:] + rest, [int(s) for s in args.seeds[:n]]
    opts, out = compare.split_overrides(args.opts)
    if args.out and out and os.path.abspath(args.out) != os.path.abspath(out):
        raise compare.StudyError(f"--out {args.out} and OUTPUT_DIR {out} disagree; give one")
    if args.parallel is not None and args.parallel < 1:
        raise compare.StudyError(f"--parallel must be 1 or more, got {args.parallel}")
    return args, opts, args.out or out or os.path.join("output", "compare")


def main(argv=None):
    try:
        args, opts, out = parse(argv)
        study = compare.plan(args.config, args.seeds, opts, out)
        study.keep_last = args.keep_last
    except compare.StudyError as e:
        sys.stderr.write(f"compare: {e}\n")
        return 2
    try:
        return run(args, study, sys.argv[1:] if argv is None else argv)
    finally:
        compare.release(study)


def run(args, study, argv):
    setup_logger(study.out, "compare_log.txt")
    for r in study.runs:
        logger.info(
            "%s seed %d: %s%s",
            r.entry.label,
            r.seed,
            r.state,
            f" ({r.why})" if r.why and r.state == "fresh" else "",
        )
    if args.dry_run:
        return 0
    parallel = args.parallel or compare.default_parallel(study)
    jobs = compare.make_jobs(study, parallel, share=not args.process_per_run)
    todo = sum(len(j.runs) for j in jobs)
    logger.info(
        "%d of %d runs to train or evaluate, in %d process%s, %d at once",
        todo,
        len(study.runs),
        len(jobs),
        "" if len(jobs) == 1 else "es",
        parallel,
    )
    try:
        compare.execute(study, jobs, parallel)
    except KeyboardInterrupt:
        logger.error("interrupted: the runs stopped where they were; the same command resumes them")
        return 130
    compare.collect(study)
    payload = compare_report.build(study, command=" ".join(["tools/compare.py", *argv]))
    md, js = compare_report.write(payload, study.out)
    try:
        pictures = compare_report.pictures(study, payload, study.out)
    except MissingMatplotlib as e:
        pictures = []
        logger.warning("no pictures: %s", e)
    print(compare_report.markdown(payload))
    print(f"written: {md}, {js}" + "".join(f", {p}" for p in pictures))
    failed = [r for r in study.runs if r.error]
    for r in failed:
        logger.error("%s seed %d: %s", r.entry.label, r.seed, r.error)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
