"""Run set-up shared by train_net.py and test_net.py: arguments, config, device, ranks, seeds,
logging, output folder and provenance."""

import argparse
import contextlib
import importlib.metadata
import logging
import os
import platform
import random
import subprocess
import sys

import numpy as np
import torch

from config import ConfigError, dump_config, load_config
from utils import comm
from utils.logger import setup_logger

logger = logging.getLogger(__name__)

PACKAGES = ("torch", "torchvision", "timm", "numpy", "yacs")


def argument_parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config_file", "--config-file", dest="config_file", default="",
                   metavar="FILE", help="YAML config (with _BASE_ inheritance)")
    p.add_argument("opts", nargs=argparse.REMAINDER,
                   help="KEY VALUE overrides, e.g. SOLVER.BASE_LR 1e-4")
    return p


def load_cfg_or_exit(args):
    """load_config, turning a ConfigError into one line on stderr and exit status 2."""
    try:
        return load_config(args.config_file or None, args.opts)
    except ConfigError as e:
        config_error_exit(e)


def config_error_exit(err):
    sys.stderr.write(f"config error: {err}\n")
    sys.exit(2)


def resolve_device(cfg):
    want = cfg.MODEL.DEVICE
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("MODEL.DEVICE is 'cuda' but no CUDA device is visible")
        return torch.device("cuda", comm.get_local_rank())
    return torch.device("cpu")


def seed_all(seed):
    """Same seed on every rank (identical model initialisation); the data layer seeds its draws."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(cfg, log_name="log.txt"):
    """Device, process group, logger (rank 0: stdout + OUTPUT_DIR/log_name), seeds -> device."""
    device = resolve_device(cfg)
    comm.init_distributed(device.type)
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_logger(cfg.OUTPUT_DIR, log_name)
    logger.info("command: %s", " ".join(sys.argv))
    logger.info("device %s, world size %d, seed %d, output %s", device, comm.get_world_size(),
                cfg.SOLVER.SEED, cfg.OUTPUT_DIR)
    seed_all(cfg.SOLVER.SEED)
    return device


def _git_commit():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip() or "unknown"
    return commit + ("-dirty" if dirty else "")


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(cfg, device):
    """Where a result came from: code, packages, hardware, seed, world size."""
    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    return {
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "packages": {n: v for n in PACKAGES if (v := _version(n))},
        "device": dev,
        "seed": cfg.SOLVER.SEED,
        "world_size": comm.get_world_size(),
    }


def derived_values(model, splits):
    """Values computed once from data and model, written into config.yaml's DERIVED section."""
    out = {"num_classes": splits.num_train_pids, "num_cameras": splits.num_cameras,
           "num_train": len(splits.train), "num_query": len(splits.query),
           "num_gallery": len(splits.gallery), "protocol": splits.protocol,
           "return_patterns": list(getattr(model, "patterns", (1,)))}
    backbone = getattr(model, "backbone", None)
    if hasattr(backbone, "num_patches"):
        out["num_patches"] = int(backbone.num_patches)
        out["patch_grid"] = [int(x) for x in backbone.grid_size]
    sdtps = getattr(model, "sdtps", None)
    if sdtps is not None and hasattr(sdtps, "keep"):
        out["sdtps_kept_tokens"] = int(sdtps.keep)
        out["sdtps_aggregated_tokens"] = int(sdtps.num_out)
    out["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return out


def write_config(cfg, derived, prov, name="config.yaml"):
    """OUTPUT_DIR/name (rank 0): the effective config + DERIVED + PROVENANCE."""
    if comm.is_main_process():
        path = os.path.join(cfg.OUTPUT_DIR, name)
        dump_config(cfg, path, derived=derived, provenance=prov)
        logger.info("config written to %s", path)


def amp_dtype(cfg, device):
    """Autocast dtype of SOLVER.AMP on `device`, or None for full precision.

    auto: bf16 on CUDA devices that support it, fp16 (with a GradScaler) on older GPUs, off on CPU.
    Explicit bf16 / fp16 are honoured on any device.
    """
    mode = cfg.SOLVER.AMP
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def autocast(device, dtype):
    """torch.autocast for `dtype`, or a no-op context for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def compile_model(cfg, model):
    """SOLVER.COMPILE: `model` under torch.compile (SOLVER.COMPILE_MODE, static shapes: one graph
    per batch shape), sharing its parameters; otherwise `model` itself."""
    if not cfg.SOLVER.COMPILE:
        return model
    return torch.compile(model, mode=cfg.SOLVER.COMPILE_MODE, dynamic=False)


def uses_cuda_graphs(cfg):
    """Whether compiled calls replay CUDA graphs, whose outputs the next replay overwrites."""
    return cfg.SOLVER.COMPILE and cfg.SOLVER.COMPILE_MODE == "reduce-overhead"
