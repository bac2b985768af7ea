"""Print a model's size, cost per triplet and token flow, without data.

    python tools/model_info.py --config_file configs/RGBNT201/DeMo.yml [KEY VALUE ...]
    python tools/model_info.py --config_file configs/RGBNT201/DeMo.yml --compare [--batch 8]

--compare prints the plain baseline (PIFE / HDM / ATM off), DeMo and DeMo_SDTPS side by side, built
with the config's dataset and input settings: parameters, GMACs and the mean forward time of one
eval batch on MODEL.DEVICE (--reps timed repetitions after a warm-up; --no-latency skips it,
--no-flops skips the cost count).

Cost is counted with torch.utils.flop_counter (2 FLOPs per multiply-add) on one random triplet in
eval
mode; GMACs = GFLOPs / 2 is the number the papers call "GFLOPs" (fvcore's multiply-add count).
"""

import argparse
import logging
import os
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import load_config  # noqa: E402
from data.datasets import DATASET_REGISTRY  # noqa: E402
from modeling import build_model, count_trainable  # noqa: E402

# Train id counts of the real sets (the classifier sizes); WMVEID863's is not recorded here.
NUM_CLASSES = {"RGBNT201": 171, "RGBNT100": 50, "MSVR310": 155}


def sizes(cfg, num_classes=None):
    """(classes, cameras) of cfg's dataset: num_classes or the recorded train id count."""
    name = cfg.DATASETS.NAMES
    classes = num_classes or NUM_CLASSES.get(name)
    if classes is None:
        raise SystemExit(
            f"tools/model_info.py: no train id count is recorded for {name}; "
            "pass --num-classes N (the number of train ids)"
        )
    return classes, DATASET_REGISTRY.get(name).num_cameras


def model_info(cfg, num_classes=None):
    """cfg -> dict: params_m, gflops, gmacs, tokens (text), patterns."""
    torch.manual_seed(0)
    model = build_model(cfg, *sizes(cfg, num_classes)).eval()
    h, w = cfg.INPUT.SIZE_TEST
    batch = {
        "images": {m: torch.randn(1, 3, h, w) for m in cfg.INPUT.MODALITIES},
        "camids": torch.zeros(1, dtype=torch.long),
    }
    # Gradients stay enabled: the counter's module tracker trips over views of parameters under
    # no_grad.
    # The math SDPA path decomposes attention into matmuls the counter sees; the fused CPU kernel
    # would be left out (0.9 GMACs of attention on ViT-B at 129 tokens).
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
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


# The three rows of --compare: overrides applied after the config file and its KEY VALUE pairs.
VARIANTS = {
    "baseline": [
        "MODEL.USE_SDTPS",
        "False",
        "MODEL.GLOBAL_LOCAL",
        "False",
        "MODEL.HDM",
        "False",
        "MODEL.ATM",
        "False",
        "TEST.RETURN_PATTERN",
        "1",
    ],
    "DeMo": [
        "MODEL.USE_SDTPS",
        "False",
        "MODEL.GLOBAL_LOCAL",
        "True",
        "MODEL.HDM",
        "True",
        "MODEL.ATM",
        "True",
    ],
    "DeMo_SDTPS": ["MODEL.USE_SDTPS", "True", "MODEL.GLOBAL_LOCAL", "True"],
}


def _device(cfg):
    want = cfg.MODEL.DEVICE
    cuda = torch.cuda.is_available() and want in ("auto", "cuda")
    return torch.device("cuda" if cuda else "cpu")


@torch.no_grad()
def latency_ms(cfg, model, batch_size=8, reps=5):
    """Mean eval forward time (ms) of a batch of `batch_size` random triplets on MODEL.DEVICE,
    after one warm-up forward."""
    device = _device(cfg)
    model = model.to(device).eval()
    h, w = cfg.INPUT.SIZE_TEST
    batch = {
        "images": {
            m: torch.randn(batch_size, 3, h, w, device=device) for m in cfg.INPUT.MODALITIES
        },
        "camids": torch.zeros(batch_size, dtype=torch.long, device=device),
    }
    model(batch)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1000 * sum(times) / len(times)


def compare(config_file, opts, batch_size=8, reps=5, flops=True, latency=True, num_classes=None):
    """{variant: {"params_m", "gmacs" (or None), "latency_ms" (or None)}} of the three rows."""
    rows = {}
    for name, extra in VARIANTS.items():
        cfg = load_config(config_file, [*opts, *extra])
        if flops:
            row = model_info(cfg, num_classes)
        else:
            torch.manual_seed(0)
            model = build_model(cfg, *sizes(cfg, num_classes))
            row = {"params_m": count_trainable(model) / 1e6, "gmacs": None}
        row["latency_ms"] = None
        if latency:
            torch.manual_seed(0)
            model = build_model(cfg, *sizes(cfg, num_classes))
            row["latency_ms"] = latency_ms(cfg, model, batch_size, reps)
            row["device"] = str(_device(cfg))
        rows[name] = row
    return rows


def print_compare(rows, config_file, batch_size):
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    print(f"config: {config_file} (dataset and input settings shared by the three rows)")
    lat = f"latency (ms, batch {batch_size})"
    print(f"| {'model':<10} | {'params (M)':>10} | {'GMACs':>8} | {lat:>24} |")
    print(f"| {'-' * 10} | {'-' * 10} | {'-' * 8} | {'-' * 24} |")
    for name, r in rows.items():
        print(
            f"| {name:<10} | {r['params_m']:>10.2f} | {fmt(r['gmacs'], '8.2f'):>8} | "
            f"{fmt(r['latency_ms'], '24.1f'):>24} |"
        )
    devices = {r["device"] for r in rows.values() if "device" in r}
    if devices:
        print("latency measured on " + ", ".join(sorted(devices)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config_file", "--config-file", required=True)
    parser.add_argument(
        "--compare", action="store_true", help="baseline, DeMo and DeMo_SDTPS side by side"
    )
    parser.add_argument("--batch", type=int, default=8, help="--compare: latency batch size")
    parser.add_argument("--reps", type=int, default=5, help="--compare: timed repetitions")
    parser.add_argument(
        "--no-latency",
        dest="latency",
        action="store_false",
        help="--compare: skip the latency measurement",
    )
    parser.add_argument(
        "--no-flops",
        dest="flops",
        action="store_false",
        help="--compare: skip the GMACs count (parameters only)",
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="train id count (default: the real set's, where it is recorded)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.compare:
        rows = compare(
            args.config_file,
            args.opts,
            args.batch,
            args.reps,
            args.flops,
            args.latency,
            args.num_classes,
        )
        print_compare(rows, args.config_file, args.batch)
        return rows
    info = model_info(load_config(args.config_file, args.opts), args.num_classes)
    print(f"config:               {args.config_file}")
    print(f"trainable parameters: {info['params_m']:.2f} M")
    cost = f"{info['gmacs']:.2f} GMACs ({info['gflops']:.2f} GFLOPs at 2 per MAC)"
    print(f"cost per triplet:     {cost}")
    print(f"tokens:               {info['tokens']}")
    print("test features:        " + ", ".join(f"{k} {v}" for k, v in info["dims"].items()))
    return info


if __name__ == "__main__":
    main()
