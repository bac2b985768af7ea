"""Run set-up shared by train_net.py and test_net.py: arguments, config, device, ranks, seeds,
logging, output folder and provenance."""

import argparse
import functools
import importlib.metadata
import logging
import os
import platform
import random
import subprocess
import sys
import time

import numpy as np
import torch

from config import ConfigError, dump_config, load_config
from data.datasets.base import DATASET_REGISTRY
from modeling import build_model, load_weights
from utils import comm
from utils.logger import capture_records, flush_pending, setup_logger
from utils.safe_load import WeightsFileError, load_file

logger = logging.getLogger(__name__)
_IMPORTED = time.perf_counter()
_CONFIG_START = None  # process_seconds() when the entry script began loading its config


def process_seconds():
    """Seconds since this process started (Linux: /proc), elsewhere since this module was
    imported: what a run's start-up (interpreter, imports, device) and fixed costs are read from."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


PACKAGES = ("torch", "torchvision", "timm", "numpy", "yacs")


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose options may also follow the trailing KEY VALUE overrides.

    argparse.REMAINDER takes everything after the first override, so `... SOLVER.SEED 3 --resume`
    would read `--resume` as a config key. Options of this parser found there (`--resume`,
    `--split val`, `--split=val`, every option an entry script adds) are taken out and parsed as
    options; an unknown `-x` where a KEY is expected is an error. A VALUE is never taken for an
    option unless it spells one of this parser's options, so `SOLVER.SEED -1` stays an override.
    """

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        flags, opts = self._split_remainder(list(getattr(namespace, "opts", None) or []))
        if flags:
            namespace, more = super().parse_known_args(flags, namespace)
            extras += more
        namespace.opts = opts
        return namespace, extras

    def _split_remainder(self, tokens):
        """(option tokens with their arguments, KEY VALUE tokens) of the REMAINDER list."""
        flags, opts, i = [], [], 0
        while i < len(tokens):
            tok = tokens[i]
            name = tok.split("=", 1)[0] if tok.startswith("--") else tok
            action = self._option_string_actions.get(name)
            if action is not None:
                n = 0 if "=" in tok else self._arg_count(action, tokens[i + 1 :])
                flags += tokens[i : i + 1 + n]
                i += 1 + n
                continue
            if len(opts) % 2 == 0 and _looks_like_option(tok):
                known = ", ".join(o for o in self._option_string_actions if o.startswith("--"))
                self.error(f"unrecognized option {tok} (options: {known})")
            opts.append(tok)
            i += 1
        return flags, opts

    @staticmethod
    def _arg_count(action, rest):
        """How many of the tokens `rest` after an option are its arguments (argparse's rule: up to
        the next option-like token for ?, * and +)."""
        if action.nargs is None:
            return 1
        if isinstance(action.nargs, int):
            return action.nargs
        n = next((j for j, t in enumerate(rest) if _looks_like_option(t)), len(rest))
        return min(n, 1) if action.nargs == "?" else n


def _looks_like_option(tok):
    return tok.startswith("-") and not _is_number(tok)


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def argument_parser(description):
    """The entry scripts' parser: --config_file, then KEY VALUE overrides; options the script adds
    may come before or after the overrides (`_ArgumentParser`)."""
    p = _ArgumentParser(description=description)
    p.add_argument(
        "--config_file",
        "--config-file",
        dest="config_file",
        default="",
        metavar="FILE",
        help="YAML config (with _BASE_ inheritance)",
    )
    p.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. SOLVER.BASE_LR 1e-4"
    )
    return p


def load_cfg_or_exit(args):
    """load_config, turning a ConfigError into one line on stderr and exit status 2.

    What config loading logs (legacy DeMo keys, the SDTPS exclusive switch) is held back until
    `setup` has set up the logger, which writes it to stdout and OUTPUT_DIR/log.txt on rank 0
    (utils/logger.py: `capture_records`).
    """
    global _CONFIG_START
    _CONFIG_START = process_seconds()  # the imports of the entry script are done
    with capture_records():
        try:
            return load_config(args.config_file or None, args.opts)
        except ConfigError as e:
            config_error_exit(e)


def config_error_exit(err):
    """One line on stderr, after anything config loading said (held back for the logger), and
    exit status 2."""
    flush_pending(sys.stderr)
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
    logger.info(
        "%.1f s after the process started (interpreter, imports, device; the imports were done "
        "at %.1f s)",
        process_seconds(),
        _CONFIG_START if _CONFIG_START is not None else float("nan"),
    )
    logger.info(
        "device %s, world size %d, seed %d, output %s",
        device,
        comm.get_world_size(),
        cfg.SOLVER.SEED,
        cfg.OUTPUT_DIR,
    )
    seed_all(cfg.SOLVER.SEED)
    return device


@functools.cache  # the code this process runs: looked up once, whatever the number of runs
def _git_commit():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
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
    out = {
        "num_classes": splits.num_train_pids,
        "num_cameras": splits.num_cameras,
        "num_train": len(splits.train),
        "num_query": len(splits.query),
        "num_gallery": len(splits.gallery),
        "protocol": splits.protocol,
        "return_patterns": list(getattr(model, "patterns", (1,))),
    }
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


def write_config(cfg, model, splits, device, name="config.yaml"):
    """OUTPUT_DIR/name (rank 0): the effective config + DERIVED (`derived_values`) + PROVENANCE."""
    if comm.is_main_process():
        path = os.path.join(cfg.OUTPUT_DIR, name)
        derived, prov = derived_values(model, splits), provenance(cfg, device)
        dump_config(cfg, path, derived=derived, provenance=prov)
        logger.info("config written to %s", path)


def need_weight(cfg):
    if not cfg.TEST.WEIGHT:
        config_error_exit(
            ConfigError(
                "TEST.WEIGHT is empty: give the checkpoint, e.g. TEST.WEIGHT output/model_final.pth"
            )
        )


def checkpoint_sizes(path):
    """(num_classes, num_cameras or None) read from a checkpoint's classifier / SIE shapes."""
    sd = load_file(path, "TEST.WEIGHT")
    sd = sd.get("model", sd) if isinstance(sd, dict) else sd
    classes = (
        next((v.shape[0] for k, v in sd.items() if str(k).endswith("classifier.weight")), None)
        if isinstance(sd, dict)
        else None
    )
    if classes is None:
        raise WeightsFileError(
            f"TEST.WEIGHT {path} holds no classifier weights: not a checkpoint "
            "of this framework (convert DeMo's with "
            "tools/convert_demo_checkpoint.py)"
        )
    cams = sd["sie.weight"].shape[0] if "sie.weight" in sd else None
    return classes, cams


def load_model(cfg, device, splits=None):
    """The model of cfg with TEST.WEIGHT loaded, in eval mode. Without `splits` the class and
    camera counts come from the checkpoint (a folder of triplets has no train split)."""
    if splits is not None:
        classes, cams = splits.num_train_pids, splits.num_cameras
    else:
        classes, cams = checkpoint_sizes(cfg.TEST.WEIGHT)
        cams = cams or DATASET_REGISTRY.get(cfg.DATASETS.NAMES).num_cameras
    model = build_model(cfg, classes, cams).to(device)
    load_weights(model, cfg.TEST.WEIGHT, cfg)
    return model.eval()


def run_cli(main, argv=None):
    """Run a tool's `main(argv)`; a config error or a refused weights file ends it with one line on
    stderr and exit status 2, as in train_net.py and test_net.py."""
    try:
        return main(argv)
    except ConfigError as e:
        config_error_exit(e)
    except WeightsFileError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)


def tool_model(args, pattern=None, log_name="vis_log.txt"):
    """The picture tools' start: the config of `args` with TEST.WEIGHT required, the device and
    logger, the dataset and the model with its weights, and the return_pattern to show (`pattern`
    or TEST.RETURN_PATTERN, refused when the model lacks it). -> (cfg, device, splits, model,
    pattern)."""
    from data import build_dataset

    cfg = load_cfg_or_exit(args)
    need_weight(cfg)
    device = setup(cfg, log_name=log_name)
    splits = build_dataset(cfg)
    model = load_model(cfg, device, splits)
    pattern = pattern or cfg.TEST.RETURN_PATTERN
    if pattern not in model.patterns:
        raise SystemExit(f"--pattern {pattern} is not available; the model has {model.patterns}")
    return cfg, device, splits, model, pattern
