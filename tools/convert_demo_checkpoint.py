"""Convert a checkpoint of DeMo's official code into this project's format.

    python tools/convert_demo_checkpoint.py --config_file configs/RGBNT201/DeMo.yml DEMO.pth OUT.pth

The config must describe the same model as the DeMo run (backbone, HEAD, JOINT_ORI_HEAD, input
size). The output loads with `TEST.WEIGHT OUT.pth`; the class and camera counts are read from the
checkpoint.
"""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import ConfigError, load_config  # noqa: E402
from modeling import build_model, load_weights  # noqa: E402
from modeling.convert import convert_demo_state_dict, is_demo_state_dict  # noqa: E402
from utils.checkpoint import atomic_save  # noqa: E402
from utils.safe_load import WeightsFileError, load_file  # noqa: E402


def convert(cfg, src, dst):
    """DeMo checkpoint file -> our {"model": state_dict} file, checked by a strict load."""
    # DeMo saves model.state_dict() with torch.save: tensors only, so weights_only suffices.
    sd = load_file(src, "DeMo checkpoint")
    if not isinstance(sd, dict):
        raise WeightsFileError(
            f"DeMo checkpoint {src} holds a {type(sd).__name__}, not a state dict"
        )
    sd = sd.get("model", sd.get("state_dict", sd))
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    if not is_demo_state_dict(sd):
        raise ValueError(f"{src} has no BACKBONE.* keys: not a DeMo checkpoint")
    ours = convert_demo_state_dict(sd, cfg)
    num_classes = next(v.shape[0] for k, v in ours.items() if k.endswith("classifier.weight"))
    model = build_model(
        cfg, num_classes, ours["sie.weight"].shape[0] if "sie.weight" in ours else 1
    )
    load_weights(model, ours, cfg)
    atomic_save({"model": model.state_dict()}, dst)
    return len(ours)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config_file", "--config-file", required=True)
    parser.add_argument("src", help="DeMo checkpoint (.pth)")
    parser.add_argument("dst", help="output checkpoint")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    n = convert(load_config(args.config_file, args.opts), args.src, args.dst)
    logging.getLogger(__name__).info("wrote %s (%d tensors)", args.dst, n)


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, ValueError) as e:  # a refused or foreign file, a bad config: one line
        sys.exit(f"error: {e}")
