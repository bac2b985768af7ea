"""Train (or, with --eval-only, evaluate) a multi-modal ReID model.

python train_net.py --config_file configs/RGBNT201/DeMo_SDTPS.yml [KEY VALUE ...]
python train_net.py --config_file ... --resume          # continue OUTPUT_DIR's run
torchrun --nproc_per_node 4 train_net.py --config_file ...
"""

import logging
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
    # Before anything is written: one live run per folder, and no new run over an old one.
    # --eval-only writes only its own test_* files, so it may share a folder with a live run.
    lock = None if args.eval_only else take_run_folder(cfg.OUTPUT_DIR, resume=args.resume)
    device = defaults.setup(cfg, log_name="test_log.txt" if args.eval_only else "log.txt")
    checkpoint = select_resume(cfg, args.resume_changed) if args.resume else (None, None)
    splits = build_dataset(cfg)
    model = build_model(cfg, splits.num_train_pids, splits.num_cameras).to(device)
    derived, prov = defaults.derived_values(model, splits), defaults.provenance(cfg, device)
    name = "test_config.yaml" if args.eval_only else "config.yaml"
    defaults.write_config(cfg, derived, prov, name)
    if args.eval_only:
        return evaluate_weights(cfg, model, splits, split="test")
    loader = build_train_loader(cfg, splits.train, device=device)
    try:
        with Evaluator(cfg, splits) as evaluator:
            trainer = Trainer(cfg, model, loader, evaluator)
            logger.info("set up %.1f s after the process started", defaults.process_seconds())
            if args.start_after:
                wait_for_gate(args.start_after)
            results = trainer.train(checkpoint=checkpoint if checkpoint[0] else None)
        # Against the epochs' own times in metrics.json: the run's fixed cost.
        logger.info("run done %.1f s after the process started", defaults.process_seconds())
        return results
    finally:
        if lock is not None:
            lock.release()


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
        "--start-after",
        metavar="FILE",
        help="set up, then wait until FILE exists before the first training step (tools/compare.py "
        "starts a config's other runs so, while its first run compiles)",
    )
    args = parser.parse_args(argv)
    if args.resume_changed and not args.resume:
        args.resume = True
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
