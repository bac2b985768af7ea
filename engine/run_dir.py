"""Who owns a run folder, and what in it a training run may continue from.

A training run takes an exclusive lock on OUTPUT_DIR (an `fcntl.flock` on OUTPUT_DIR/train.lock,
released by the kernel when the process dies, so a killed run never leaves it stuck); a second
run into the same folder stops at once with the holder's pid and start time. Under torchrun only
rank 0 locks. Once the lock is held, temporary files of killed writes (`*.tmp.<pid>`) are removed.

`--resume` continues from the newest checkpoint that loads completely; a folder that holds a run
but nothing intact, or a config that changes the schedule or the model against the checkpoint's,
stops before anything is written.
"""

import datetime
import fcntl
import glob
import json
import logging
import os
import re
import socket

from yacs.config import CfgNode

from config import ConfigError, translate_keys
from utils import comm
from utils.checkpoint import (
    FINAL,
    LAST,
    PERIODIC,
    RESUME,
    TMP_SUFFIX,
    atomic_write,
    load_checkpoint,
)

logger = logging.getLogger(__name__)

LOCK = "train.lock"
# Files that only a training run writes: a folder holding any of them holds a run.
RUN_FILES = (
    "last_checkpoint",
    RESUME,
    FINAL,
    "model_best.pth",
    "metrics.json",
    "config.yaml",
)
# Keys a resumed run may change freely: where files are, how fast or how often things happen,
# and how the test is run. Every other key (the schedule, the data, the model, the precision,
# the seed) makes the continued run a different experiment.
FREE_ON_RESUME = (
    "OUTPUT_DIR",
    "MODEL.DEVICE",
    "MODEL.PRETRAIN_PATH",
    "MODEL.SDPA_BACKEND",
    "DATASETS.ROOT_DIR",
    "DATASETS.SKIP_BAD",
    "DATALOADER.NUM_WORKERS",
    "DATALOADER.PREFETCH_FACTOR",
    "DATALOADER.PIPELINE",
    "SOLVER.COMPILE",
    "SOLVER.COMPILE_MODE",
    "SOLVER.DDP_BUCKET_MB",
    "SOLVER.CHECKPOINT_PERIOD",
    "SOLVER.KEEP_CHECKPOINTS",
    "SOLVER.LOG_PERIOD",
    "SOLVER.EVAL_PERIOD",
    "TEST.",
)


class RunDirError(ConfigError):
    """The run folder cannot be used as asked; the message says why and what to do."""


def run_files(output_dir):
    """Names of the training-run files in `output_dir` (empty when it holds no run)."""
    if not os.path.isdir(output_dir):
        return []
    names = set(os.listdir(output_dir))
    found = [n for n in RUN_FILES if n in names]
    found += sorted(n for n in names if PERIODIC.match(n))
    found += sorted(n for n in names if n.startswith("events.out.tfevents."))
    return found


class RunLock:
    """The exclusive lock of a folder (OUTPUT_DIR/train.lock for a run), held until `release()`
    or the process ends. `busy`: the message when another process holds it, with {folder} and
    {holder} (its pid, host and start time)."""

    BUSY = (
        "OUTPUT_DIR {folder} is in use by a live run ({holder}): wait for it to end, stop it, "
        "or choose another OUTPUT_DIR"
    )

    def __init__(self, output_dir, name=LOCK, busy=BUSY):
        self.path = os.path.join(output_dir, name)
        self.busy = busy
        self._file = None

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunDirError(
                self.busy.format(folder=os.path.dirname(self.path), holder=holder)
            ) from None
        self._file = f
        return self

    def stamp(self):
        """Write the holder's pid, host and start time into the lock file, for a second run's
        message."""
        f = self._file
        f.seek(0)
        f.truncate()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n")
        f.flush()

    def release(self):
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def take_run_folder(output_dir, resume):
    """Rank 0 of a training run: lock `output_dir`, refuse a new run over an existing one, and
    remove the temporaries of killed writes. Returns the lock (None on other ranks)."""
    if int(os.environ.get("RANK", 0)) != 0:
        return None
    lock = RunLock(output_dir).acquire()
    found = run_files(output_dir)
    if found and not resume:
        lock.release()
        raise RunDirError(
            f"OUTPUT_DIR {output_dir} already holds a training run ({', '.join(found[:4])}): "
            "pass --resume to continue it, or another OUTPUT_DIR to start a new one"
        )
    lock.stamp()
    for tmp in glob.glob(os.path.join(glob.escape(output_dir), f"*{TMP_SUFFIX}*")):
        if re.search(re.escape(TMP_SUFFIX) + r"\d+$", tmp):
            os.remove(tmp)
            logger.warning("removed %s, left by a killed write", tmp)
    return lock


def resume_candidates(output_dir):
    """Checkpoint names to try, best first: the one `last_checkpoint` names, then last.pth and
    the periodic model_NNNN.pth files, newest first."""
    names = []
    marker = os.path.join(output_dir, LAST)
    if os.path.isfile(marker):
        with open(marker) as f:
            named = f.read().strip()
        if named:
            names.append(named)
    present = [n for n in os.listdir(output_dir) if n == RESUME or PERIODIC.match(n)]
    present.sort(key=lambda n: os.path.getmtime(os.path.join(output_dir, n)), reverse=True)
    return names + [n for n in present if n not in names]


def find_resumable(output_dir):
    """(path, checkpoint dict) of the newest checkpoint in `output_dir` that loads completely, or
    (None, None) when the folder holds no run; raises RunDirError when it holds a run but nothing
    intact. Each skipped candidate is logged with the reason."""
    if not run_files(output_dir):
        return None, None
    for name in resume_candidates(output_dir):
        path = os.path.join(output_dir, name)
        if not os.path.isfile(path):
            logger.warning(
                "--resume: %s names %s, which does not exist; trying older checkpoints", LAST, path
            )
            continue
        try:
            ckpt = load_checkpoint(path)
        except Exception as e:  # truncated or damaged: the next candidate may be intact
            logger.warning("--resume: %s does not load (%s); trying older checkpoints", path, e)
            continue
        missing = [k for k in ("model", "optimizer", "epoch") if ckpt.get(k) is None]
        if missing:
            logger.warning("--resume: %s lacks %s; trying older checkpoints", path, missing)
            continue
        return path, ckpt
    raise RunDirError(
        f"--resume: OUTPUT_DIR {output_dir} holds a run ({', '.join(run_files(output_dir)[:4])}) "
        "but no checkpoint that loads completely: nothing to continue from. Move the folder "
        "away (or delete it) to start again, or choose another OUTPUT_DIR"
    )


def _flatten(node, prefix=""):
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def config_changes(saved_yaml, cfg, source="the checkpoint"):
    """[(key, saved value, current value)] for the keys that differ between a checkpoint's
    config (its YAML dump) and `cfg` and are not free to change on resume. A config saved under
    older key names (DeMo's, config/validate.py's legacy table) is read in today's names first,
    so a renamed key compares with itself."""
    saved = _flatten(translate_keys(_flatten(CfgNode.load_cfg(saved_yaml)), source))
    now = _flatten(cfg)
    changes = []
    for key in sorted(saved.keys() & now.keys()):
        if key.startswith(FREE_ON_RESUME):  # exact keys and the TEST. prefix alike
            continue
        if saved[key] != now[key]:
            changes.append((key, saved[key], now[key]))
    return changes


def check_resume_config(ckpt, path, cfg, allow_changes):
    """Stop (RunDirError) when `cfg` changes the schedule or the model against the checkpoint's
    config, listing the keys; with `allow_changes` log each difference instead."""
    if not ckpt.get("cfg"):
        logger.warning("--resume: %s carries no config; its settings cannot be compared", path)
        return
    changes = config_changes(ckpt["cfg"], cfg, f"the config stored in {path}")
    if not changes:
        return
    listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes)
    if not allow_changes:
        raise RunDirError(
            f"--resume: the config differs from {path}'s in keys that change the schedule or "
            f"the model ({listed}); resume with the checkpoint's values, or pass --resume-changed "
            "to continue with the new ones"
        )
    for k, a, b in changes:
        logger.warning("--resume-changed: %s %r -> %r (checkpoint %s)", k, a, b, path)


def select_resume(cfg, allow_changes):
    """Every rank: (path, checkpoint) to resume from, chosen on rank 0, or (None, None) when the
    folder holds no run (training starts from scratch)."""
    path = ckpt = None
    error = None
    if comm.is_main_process():
        try:
            path, ckpt = find_resumable(cfg.OUTPUT_DIR)
            if ckpt is not None:
                check_resume_config(ckpt, path, cfg, allow_changes)
        except RunDirError as e:
            error = str(e)
    path, error = comm.broadcast_object((path, error))
    if error:
        raise RunDirError(error)
    if path is None:
        logger.warning("--resume: %s holds no run; starting from scratch", cfg.OUTPUT_DIR)
        return None, None
    if ckpt is None:  # the other ranks read rank 0's choice themselves (their own RNG states)
        ckpt = load_checkpoint(path)
    return path, ckpt


def trim_records(output_dir, epoch):
    """Drop metrics.json records of epochs after `epoch` (an unfinished epoch that the resumed
    run redoes) and torn lines of a killed write; returns the eval records of `epoch` kept."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return []
    kept, dropped = [], 0
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if rec.get("epoch") is not None and rec["epoch"] > epoch:
                dropped += 1
                continue
            kept.append(rec)
    if dropped:
        text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in kept)
        atomic_write(path, lambda f: f.write(text.encode()))
        logger.info(
            "metrics.json: %d records after epoch %d removed (that epoch is redone)", dropped, epoch
        )
    return [r for r in kept if r.get("type") == "eval" and r.get("epoch") == epoch]
