"""Evaluate a checkpoint (ours, a bare state dict, or DeMo's) on the test split.

python test_net.py --config_file configs/RGBNT201/DeMo_SDTPS.yml TEST.WEIGHT out/model_final.pth
torchrun --nproc_per_node 2 test_net.py --config_file ... TEST.WEIGHT ...
"""

import logging
import sys

from config import ConfigError
from data import build_dataset
from engine import defaults, evaluate_weights
from modeling import build_model
from utils.safe_load import WeightsFileError

logger = logging.getLogger("test_net")


def main(args):
    cfg = defaults.load_cfg_or_exit(args)
    if not cfg.TEST.WEIGHT:
        raise ConfigError(
            "TEST.WEIGHT is empty: give the checkpoint to evaluate, "
            "e.g. TEST.WEIGHT output/model_final.pth"
        )
    device = defaults.setup(cfg, log_name="test_log.txt")
    splits = build_dataset(cfg)
    model = build_model(cfg, splits.num_train_pids, splits.num_cameras).to(device)
    # Its own file names: evaluating inside a training folder must not overwrite that run's record.
    defaults.write_config(cfg, model, splits, device, "test_config.yaml")
    return evaluate_weights(cfg, model, splits, split=args.split)


def cli(argv=None):
    parser = defaults.argument_parser("Evaluate a multi-modal ReID checkpoint.")
    parser.add_argument(
        "--split",
        default="test",
        choices=("test", "val"),
        help="test (query / gallery) or val (needs DATASETS.VAL_FRACTION > 0)",
    )
    args = parser.parse_args(argv)
    try:
        main(args)
    except ConfigError as e:
        defaults.config_error_exit(e)
    except WeightsFileError as e:  # refused or unreadable weights file: one line, no traceback
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)


if __name__ == "__main__":
    cli()
