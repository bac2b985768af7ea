"""Train (or, with --eval-only, evaluate) a multi-modal ReID model.

python train_net.py --config_file configs/RGBNT201/DeMo_SDTPS.yml [KEY VALUE ...]
python train_net.py --config_file ... --resume          # continue OUTPUT_DIR's run
python train_net.py --config_file ... --seeds 1 2 3     # OUTPUT_DIR/seed_<s>, one process
torchrun --nproc_per_node 4 train_net.py --config_file ...
"""

import contextlib
import gc
import logging
import os
import sys

from config import ConfigError
from data import build_dataset, build_train_loader
from engine import Evaluator, NonFiniteLossError, Trainer, defaults, evaluate_weights
from engine.compare import wait_for_gate
from engine.run_dir import RunDirError, select_resume, take_run_folder
from modeling import build_model
from utils import comm
from utils.safe_load import WeightsFileError

logger = logging.getLogger("train_net")


def main(args):
    cfg = defaults.load_cfg_or_exit(args)
    if args.eval_only:
        # --eval-only writes only its own test_* files, so it may share a folder with a live run.
        device = defaults.setup(cfg, log_name="test_log.txt")
        splits = build_dataset(cfg)
        model = build_model(cfg, splits.num_train_pids, splits.num_cameras).to(device)
        defaults.write_config(cfg, model, splits, device, "test_config.yaml")
        return evaluate_weights(cfg, model, splits, split="test")
    cfgs = seed_configs(cfg, args.seeds) if args.seeds else [cfg]
    # Before anything is written: one live run per folder, and no new run over an old one.
    locks = []
    try:
        for c in cfgs:
            locks.append(take_run_folder(c.OUTPUT_DIR, resume=args.resume))
        return train_runs(cfgs, locks, args)
    finally:
        for lock in locks:
            if lock is not None:
                lock.release()


def seed_configs(cfg, seeds):
    """One config per seed of --seeds: SOLVER.SEED s, OUTPUT_DIR OUTPUT_DIR/seed_<s>."""
    out = []
    for s in seeds:
        c = cfg.clone()
        c.defrost()
        c.SOLVER.SEED, c.OUTPUT_DIR = s, os.path.join(cfg.OUTPUT_DIR, f"seed_{s}")
        c.freeze()
        out.append(c)
    return out


def train_runs(cfgs, locks, args):
    """Train the runs of `cfgs` one after another in this process. The later runs reuse what the
    first set up: the data index, the model object (its weights are replaced by the run's own
    freshly built ones, so torch.compile's graphs and CUDA graphs stay valid) and the test loader.
    A run that stops on a non-finite loss does not stop the runs after it."""
    model = splits = evaluator = None
    failed = []
    with contextlib.ExitStack() as stack:
        for i, (cfg, lock) in enumerate(zip(cfgs, locks)):
            device = defaults.setup(cfg)
            if i:
                logger.info(
                    "run %d of %d in this process: data, compiled graphs and test loader "
                    "as set up by the first",
                    i + 1,
                    len(cfgs),
                )
            checkpoint = select_resume(cfg, args.resume_changed) if args.resume else (None, None)
            if splits is None or cfg.DATASETS.VAL_FRACTION > 0:  # validation ids follow the seed
                splits = build_dataset(cfg)
            fresh = build_model(cfg, splits.num_train_pids, splits.num_cameras)  # on the CPU
            if model is None:
                model = fresh.to(device)
            else:  # copied onto the device into the first run's model object
                model.load_state_dict(fresh.state_dict())
            del fresh
            defaults.write_config(cfg, model, splits, device)
            loader = build_train_loader(cfg, splits.train, device=device)
            if evaluator is None:
                evaluator = stack.enter_context(Evaluator(cfg, splits))
            evaluator.cfg, evaluator.splits = cfg, splits
            trainer = Trainer(cfg, model, loader, evaluator)
            logger.info("set up %.1f s after the process started", defaults.process_seconds())
            if args.start_after and i == 0:
                wait_for_gate(args.start_after)
            try:
                results = trainer.train(checkpoint=checkpoint if checkpoint[0] else None)
            except NonFiniteLossError as e:
                if len(cfgs) == 1:
                    raise
                logger.error("%s", e)
                failed.append(cfg.OUTPUT_DIR)
            del trainer, loader
            gc.collect()  # the trainer's optimizer state (hooks refer back to it: a cycle)
            if lock is not None:
                lock.release()
            # Against the epochs' own times in metrics.json: the run's fixed cost.
            logger.info("run done %.1f s after the process started", defaults.process_seconds())
    if failed:
        raise NonFiniteLossError(f"{len(failed)} of {len(cfgs)} runs stopped: {', '.join(failed)}")
    return results


def cli(argv=None):
    parser = defaults.argument_parser("Train a multi-modal (RGB / NI / TI) ReID model.")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest intact checkpoint in OUTPUT_DIR (unfinished epoch redone)",
    )
    parser.add_argument(
        "--resume-changed",
        action="store_true",
        help="with --resume: continue even where the config changes the schedule "
        "or the model against the checkpoint's (each difference is logged)",
    )
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="evaluate TEST.WEIGHT (or the untrained model) and exit; results go "
        "to test_metrics.json, never to a training run's files",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        metavar="SEED",
        help="train one run per seed, one after another in this process, into "
        "OUTPUT_DIR/seed_<s>: the later runs skip the imports, the data index and the "
        "compilation (tools/compare.py trains its seeds so); with --resume each seed's run "
        "continues where it stopped and a seed without one starts",
    )
    parser.add_argument(
        "--start-after",
        metavar="FILE",
        help="set up, then wait until FILE exists before the first training step (tools/compare.py "
        "starts a config's other runs so, while its first run compiles)",
    )
    args = parser.parse_args(argv)
    if args.seeds:  # nargs="+" also takes the KEY VALUE pairs that follow the seeds
        n = next((i for i, t in enumerate(args.seeds) if not t.lstrip("-").isdigit()), None)
        if n is not None:
            args.seeds, args.opts = args.seeds[:n], args.seeds[n:] + args.opts
        if not args.seeds:
            parser.error("--seeds: give one or more integer seeds")
        args.seeds = [int(t) for t in args.seeds]
        if len(set(args.seeds)) < len(args.seeds) or min(args.seeds) < 0:
            parser.error(f"--seeds {' '.join(map(str, args.seeds))}: give distinct seeds >= 0")
    if args.resume_changed and not args.resume:
        args.resume = True
    if args.seeds and args.eval_only:
        parser.error("--seeds trains runs; evaluate each run folder on its own")
    if args.seeds and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        parser.error("--seeds trains on one device; under torchrun give each seed its own command")
    if args.seeds and "SOLVER.SEED" in args.opts[0::2]:
        parser.error("--seeds sets SOLVER.SEED of each run; remove SOLVER.SEED from the overrides")
    try:
        main(args)
    except RunDirError as e:
        if comm.is_main_process():  # every rank stops; one says why
            sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
    except ConfigError as e:
        defaults.config_error_exit(e)
    except WeightsFileError as e:  # refused or unreadable weights file: one line, no traceback
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
    except NonFiniteLossError as e:
        logger.error("%s", e)
        sys.exit(1)


if __name__ == "__main__":
    cli()
