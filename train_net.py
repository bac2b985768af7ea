"""Train (or, with --eval-only, evaluate) a multi-modal ReID model.

    python train_net.py --config_file configs/RGBNT201/DeMo_SDTPS.yml [KEY VALUE ...]
    python train_net.py --config_file ... --resume          # continue OUTPUT_DIR's last run
    torchrun --nproc_per_node 4 train_net.py --config_file ...
"""

import functools
import logging
import sys

from config import ConfigError
from data import build_dataset, build_train_loader
from engine import NonFiniteLossError, Trainer, evaluate, launch
from modeling import build_model, load_weights
from utils.checkpoint import read_last
from utils.safe_load import WeightsFileError

logger = logging.getLogger("train_net")


def main(args):
    cfg = launch.load_cfg_or_exit(args)
    last = read_last(cfg.OUTPUT_DIR)
    if last and not (args.resume or args.eval_only):
        # A new run there would overwrite the old one's checkpoints and config.yaml, and append
        # its records to the old metrics.json.
        launch.config_error_exit(
            f"OUTPUT_DIR {cfg.OUTPUT_DIR} already holds a training run (last checkpoint {last}): "
            "pass --resume to continue it, or another OUTPUT_DIR to start a new one")
    device = launch.setup(cfg)
    splits = build_dataset(cfg)
    model = build_model(cfg, splits.num_train_pids, splits.num_cameras).to(device)
    derived, prov = launch.derived_values(model, splits), launch.provenance(cfg, device)
    launch.write_config(cfg, derived, prov)
    if args.eval_only:
        if cfg.TEST.WEIGHT:
            load_weights(model, cfg.TEST.WEIGHT, cfg)
        else:
            logger.warning("--eval-only without TEST.WEIGHT: evaluating the untrained model")
        return evaluate(cfg, model, splits, split="test")
    loader = build_train_loader(cfg, splits.train, device=device)
    trainer = Trainer(cfg, model, loader, functools.partial(evaluate, cfg, splits=splits))
    return trainer.train(resume=args.resume)


def cli(argv=None):
    parser = launch.argument_parser("Train a multi-modal (RGB / NI / TI) ReID model.")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint (unfinished epoch redone)")
    parser.add_argument("--eval-only", action="store_true",
                        help="evaluate TEST.WEIGHT (or the untrained model) and exit")
    args = parser.parse_args(argv)
    try:
        main(args)
    except ConfigError as e:
        launch.config_error_exit(e)
    except WeightsFileError as e:  # refused or unreadable weights file: one line, no traceback
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
    except NonFiniteLossError as e:
        logger.error("%s", e)
        sys.exit(1)


if __name__ == "__main__":
    cli()
