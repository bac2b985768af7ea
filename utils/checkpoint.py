"""Checkpoints that resume: atomic writes, `last_checkpoint`, rotation, RNG states.

A checkpoint is a dict: {"model", "optimizer", "scheduler", "scaler", "epoch" (last finished epoch),
"iteration" (global iteration at its end), "rng" (one entry per rank), "cfg" (YAML dump),
"extra"}. Files are written to a temporary name,
fsynced and moved into place with os.replace, so a kill during a write never leaves a corrupt file
under the final name; `last_checkpoint` (a text file naming the newest full checkpoint) is replaced
the same way, after the checkpoint it names is complete.

Writing happens in the background: `save` copies the state to host memory (a consistent snapshot,
while training goes on changing the tensors in place) and a thread serialises and fsyncs it, one
file at a time, so the next epoch trains while a 1.2 GB ViT-B + Adam state is written. `wait()`
returns once every file is on disk and raises if a write failed.
"""

import itertools
import logging
import os
import random
import re
import threading
import time

import numpy as np
import torch

from . import comm
from .safe_load import load_file

logger = logging.getLogger(__name__)

LAST = "last_checkpoint"
RESUME = "last.pth"  # the checkpoint written every epoch but the last, for resuming
FINAL = "model_final.pth"  # the checkpoint of the last epoch
PERIODIC = re.compile(r"^model_(\d{4,})\.pth$")
TMP_SUFFIX = ".tmp."  # a file being written is `<name>.tmp.<pid>` until it is complete


def atomic_write(path, write):
    """write(binary file) into `path` so that a kill leaves the old file or the new one, whole."""
    tmp = f"{path}{TMP_SUFFIX}{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):  # no partial file left behind
            os.remove(tmp)
        raise
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_save(obj, path):
    """torch.save(obj, path) that either completes or leaves the previous file untouched."""
    atomic_write(path, lambda f: torch.save(obj, f))


def rng_state():
    """This process's RNG states as tensors / plain values (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        # int64, not uint32: pickling a uint32 tensor fails in torch 2.14 (all_gather_object).
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path, mmap=False):
    """A checkpoint file as a dict of tensors and plain values, on the CPU, read without running
    code (utils.safe_load). `mmap`: a checkpoint of ours (zip format) with its tensors mapped
    from the file, read only when touched (for its small fields)."""
    if mmap:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return load_file(path, "checkpoint to resume")


def read_last(output_dir):
    """Path of the newest full checkpoint named by `last_checkpoint`, or None."""
    marker = os.path.join(output_dir, LAST)
    if not os.path.isfile(marker):
        return None
    with open(marker) as f:
        name = f.read().strip()
    path = os.path.join(output_dir, name)
    return path if name and os.path.isfile(path) else None


class Checkpointer:
    """Saves and restores the training state of one run under `output_dir` (rank 0 writes)."""

    def __init__(self, output_dir, model, optimizer=None, scheduler=None, scaler=None, keep=2):
        self.output_dir = output_dir
        self.model, self.optimizer = model, optimizer
        self.scheduler, self.scaler = scheduler, scaler
        self.keep = keep
        self._writer, self._error = None, None
        self._pinned = {}  # pinned host buffers of the GPU tensors, reused by every save

    def state(self, epoch, cfg=None, extra=None, iteration=None):
        opt = self.optimizer
        return {
            "model": self.model.state_dict(),
            "optimizer": opt.state_dict() if opt is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": epoch,
            "iteration": iteration,  # global iteration at the end of `epoch`
            # Every rank's RNG: a resumed DDP run repeats each rank's dropout draws.
            "rng": comm.all_gather_object(rng_state()),
            "cfg": cfg.dump() if cfg is not None else None,
            "extra": extra or {},
        }

    def save(self, name, epoch, cfg=None, extra=None, mark_last=False, iteration=None):
        """Write OUTPUT_DIR/name in the background (after any write still in flight); collective
        under DDP (RNG gather), files from rank 0 only. Returns the path; the file is there once
        `wait()` returns."""
        state = self.state(epoch, cfg, extra, iteration)
        if not comm.is_main_process():
            return None
        self.wait()  # the pinned buffers are free again
        state = self._to_host(state)
        path = os.path.join(self.output_dir, name)

        def write():
            start = time.perf_counter()
            try:
                atomic_save(state, path)
                if mark_last:
                    atomic_write(
                        os.path.join(self.output_dir, LAST), lambda f: f.write(name.encode())
                    )
                if PERIODIC.match(name):
                    self._rotate()
            except BaseException as e:  # raised by the next save() or wait()
                self._error = (path, e)
                return
            logger.info("saved %s (epoch %d) in %.1f s", path, epoch, time.perf_counter() - start)

        # Not a daemon: an interpreter that exits (also on an exception) first finishes the file.
        self._writer = threading.Thread(target=write, name=f"checkpoint {name}")
        self._writer.start()
        return path

    def _to_host(self, state):
        """A copy of a nested state (dicts, lists, tuples) with every tensor in host memory.

        GPU tensors go into pinned buffers kept from one save to the next (by position in the
        state), copied without blocking and synchronised once, at the cost of keeping that much
        pinned memory (1.2 GB for ViT-B with Adam) on rank 0: several times faster than
        pageable copies at the epoch's end.
        """
        slots, devices = itertools.count(), set()

        def copy(obj):
            if isinstance(obj, torch.Tensor):
                obj = obj.detach()
                if not obj.is_cuda:
                    return obj.to("cpu", copy=True)
                i = next(slots)
                buf = self._pinned.get(i)
                if buf is None or buf.shape != obj.shape or buf.dtype != obj.dtype:
                    buf = self._pinned[i] = torch.empty(obj.shape, dtype=obj.dtype, pin_memory=True)
                devices.add(obj.device)
                return buf.copy_(obj, non_blocking=True)
            if isinstance(obj, dict):
                return {k: copy(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
                return type(obj)(copy(v) for v in obj)
            return obj

        out = copy(state)
        for device in devices:
            torch.cuda.synchronize(device)
        return out

    def wait(self, raise_error=True):
        """Block until the checkpoint in flight (if any) is written. A failed write raises, or
        with raise_error=False is logged (on a path that is already raising something else)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.join()
        error, self._error = self._error, None
        if error is not None:
            path, e = error
            if not raise_error:
                logger.error("writing the checkpoint %s failed: %r", path, e)
                return
            raise RuntimeError(f"writing the checkpoint {path} failed: {e!r}") from e

    def _rotate(self):
        if self.keep <= 0:
            return
        found = sorted(n for n in os.listdir(self.output_dir) if PERIODIC.match(n))
        for name in found[: -self.keep]:
            os.remove(os.path.join(self.output_dir, name))

    def load(self, path, ckpt=None):
        """Restore everything from `path` (or from `ckpt`, its already loaded content); returns
        (last finished epoch, extra dict)."""
        self.wait()
        if ckpt is None:
            ckpt = load_checkpoint(path)
        self.model.load_state_dict(ckpt["model"])
        for obj, key in (
            (self.optimizer, "optimizer"),
            (self.scheduler, "scheduler"),
            (self.scaler, "scaler"),
        ):
            if obj is not None and ckpt.get(key) is not None:
                obj.load_state_dict(ckpt[key])
        rngs = ckpt.get("rng") or []
        rank = comm.get_rank()
        if len(rngs) == comm.get_world_size():
            set_rng_state(rngs[rank])
        else:
            logger.warning(
                "%s holds RNG states of %d ranks, this run has %d: RNG not restored",
                path,
                len(rngs),
                comm.get_world_size(),
            )
        logger.info("resumed from %s (epoch %d finished)", path, ckpt["epoch"])
        return ckpt["epoch"], ckpt.get("extra", {})
