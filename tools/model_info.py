"""Print a model's size, cost per triplet and token flow, without data.

    python tools/model_info.py --config_file configs/RGBNT201/DeMo.yml [KEY VALUE ...]

Cost is counted with torch.utils.flop_counter (2 FLOPs per multiply-add) on one random triplet in
eval
mode; GMACs = GFLOPs / 2 is the number the papers call "GFLOPs" (fvcore's multiply-add count).
"""

import argparse
import logging
import os
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import load_config  # noqa: E402
from modeling import build_model, count_trainable  # noqa: E402

NUM_CLASSES = {"RGBNT201": 171, "RGBNT100": 50, "MSVR310": 155}
NUM_CAMERAS = {"RGBNT201": 4, "RGBNT100": 8, "MSVR310": 8}


def model_info(cfg):
    """cfg -> dict: params_m, gflops, gmacs, tokens (text), patterns."""
    torch.manual_seed(0)
    name = cfg.DATASETS.NAMES
    model = build_model(cfg, NUM_CLASSES[name], NUM_CAMERAS[name]).eval()
    h, w = cfg.INPUT.SIZE_TEST
    batch = {
        "images": {m: torch.randn(1, 3, h, w) for m in cfg.INPUT.MODALITIES},
        "camids": torch.zeros(1, dtype=torch.long),
    }
    # Gradients stay enabled: the counter's module tracker trips over views of parameters under
    # no_grad.
    with FlopCounterMode(display=False) as counter:
        feats = model(batch)
    flops = counter.get_total_flops()
    n = model.num_patches
    tokens = (
        f"backbone: 1 + {n} tokens per modality (grid {model.backbone.grid_size[0]}x"
        f"{model.backbone.grid_size[1]})"
    )
    if model.sdtps is not None:
        s = model.sdtps
        tokens += f"; SDTPS: {n} -> {s.keep} -> {s.num_out} + 1 per modality"
    elif model.hdm is not None:
        seqs = "/".join(str((n + 1) * k) for k in (1, 2, 3))
        tokens += f"; HDM: 7 queries over {seqs}-token sequences"
    dims = {k: v.shape[-1] for k, v in feats.items()}
    return {
        "params_m": count_trainable(model) / 1e6,
        "gflops": flops / 1e9,
        "gmacs": flops / 2e9,
        "tokens": tokens,
        "dims": dims,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config_file", "--config-file", required=True)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    info = model_info(load_config(args.config_file, args.opts))
    print(f"config:               {args.config_file}")
    print(f"trainable parameters: {info['params_m']:.2f} M")
    cost = f"{info['gmacs']:.2f} GMACs ({info['gflops']:.2f} GFLOPs at 2 per MAC)"
    print(f"cost per triplet:     {cost}")
    print(f"tokens:               {info['tokens']}")
    print("test features:        " + ", ".join(f"{k} {v}" for k, v in info["dims"].items()))
    return info


if __name__ == "__main__":
    main()
