"""The training loop: a short epoch/step loop; everything else lives in hooks (engine/hooks.py).

The model's training forward returns a dict: keys starting with `loss_` are summed and
back-propagated, the others (`acc_*`) are logged. Per-step values stay on the device; the host
syncs only at log periods and epoch ends, where a non-finite loss stops the run before any
checkpoint of the corrupted weights is written.
"""

import inspect
import itertools
import logging
import os
import sys

import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from data.prefetch import to_device
from solver import build_optimizer, build_scheduler
from utils import comm
from utils.checkpoint import Checkpointer, load_checkpoint
from utils.events import EventWriter

from .defaults import provenance
from .hooks import Checkpoint, Evaluate, LRSchedule, PeriodicWriter
from .precision import amp_dtype, autocast, compile_model, grad_scaler, uses_cuda_graphs
from .run_dir import select_resume, trim_records

logger = logging.getLogger(__name__)


def wrap_ddp(model, cfg, device):
    """`model` under DistributedDataParallel as training uses it (SOLVER.DDP_BUCKET_MB,
    SOLVER.DDP_GRAD_DTYPE).

    static_graph lets DDP cope with parameters a configuration never uses, without the per-step
    cost of find_unused_parameters; gradients as views of the buckets save a copy of every
    gradient per step. Where the installed torch has it (2.14 does, 2.11 does not),
    batched_grad_copy puts the gradients into the buckets with two kernels a bucket instead of
    one per parameter: the step drops its gradients, so every step copies all of them
    (docs/PERFORMANCE.md has the cost).
    """
    s = cfg.SOLVER
    kw = {}
    if "batched_grad_copy" in inspect.signature(DistributedDataParallel).parameters:
        kw["batched_grad_copy"] = True
    ids = [device.index] if device.type == "cuda" else None
    model = DistributedDataParallel(
        model,
        device_ids=ids,
        static_graph=True,
        gradient_as_bucket_view=True,
        bucket_cap_mb=s.DDP_BUCKET_MB,
        **kw,
    )
    if s.DDP_GRAD_DTYPE == "bfloat16":
        model.register_comm_hook(None, default_hooks.bf16_compress_hook)
    logger.info(
        "DDP over %d ranks: %g MB gradient buckets, all-reduced in %s, %s",
        comm.get_world_size(),
        s.DDP_BUCKET_MB,
        s.DDP_GRAD_DTYPE,
        "batched copies" if kw else "a copy per gradient",
    )
    return model


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; the message names the epoch, iteration and loss."""


class Trainer:
    """Trains `model` on `train_loader` (a TrainLoader: len(), set_epoch(e), iteration, close()).

    evaluator: None or callable(model, split=..., writer=..., step=..., epoch=...) -> {pattern:
    metrics}, e.g. functools.partial(engine.evaluate, cfg, splits=splits); `step` is the global
    iteration, the x axis of every TensorBoard scalar of the run.
    """

    def __init__(self, cfg, model, train_loader, evaluator=None):
        self.cfg = cfg
        self.model = model
        self.device = next(model.parameters()).device
        self.loader = train_loader
        self.evaluator = evaluator
        self.max_epochs = cfg.SOLVER.MAX_EPOCHS
        self.iters_per_epoch = len(train_loader)
        self.has_val = cfg.DATASETS.VAL_FRACTION > 0
        self.optimizer = build_optimizer(cfg, model)
        self.scheduler = build_scheduler(cfg, self.optimizer)
        self.amp_dtype = amp_dtype(cfg, self.device)
        self.scaler = grad_scaler(self.device, self.amp_dtype)  # enabled for fp16 only
        self.skipped_steps = torch.zeros((), dtype=torch.long, device=self.device)
        self.train_model = self._wrap(model)
        self.checkpointer = Checkpointer(
            cfg.OUTPUT_DIR,
            model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            keep=cfg.SOLVER.KEEP_CHECKPOINTS,
        )
        self.writer = None  # opened by train(), after a resume has trimmed the old records
        # The epoch's checkpoint is written (in the background) before its evaluation starts: a
        # crash in evaluation does not cost the epoch's weights.
        self.hooks = []
        self.register_hooks([LRSchedule(), PeriodicWriter(), Checkpoint(), Evaluate()])
        self.epoch, self.iter, self.pbar = 0, 0, None
        self.state = {}  # carried through checkpoints (best validation score)
        self.results = None  # the last test evaluation
        self.pending_eval = ()  # splits of the resumed epoch whose evaluation never finished
        self._window = {}
        logger.info(
            "training in %s, %d iterations per epoch, %d epochs",
            self.amp_dtype or "float32",
            self.iters_per_epoch,
            self.max_epochs,
        )

    def _wrap(self, model):
        if comm.get_world_size() > 1:
            model = wrap_ddp(model, self.cfg, self.device)
        return compile_model(self.cfg, model)

    def head_lr(self):
        """LR of the new modules (the first group when the model has only backbone tensors)."""
        groups = self.optimizer.param_groups
        return next((g["lr"] for g in groups if g["name"] == "head"), groups[0]["lr"])

    def register_hooks(self, hooks):
        """Append `hooks` (engine.HookBase instances); they run after the ones registered before,
        in the given order."""
        for h in hooks:
            h.trainer = self
            self.hooks.append(h)

    def step_of(self, epoch, it=None):
        """Global iteration of iteration `it` of `epoch` (its end when `it` is None)."""
        return (epoch - 1) * self.iters_per_epoch + (self.iters_per_epoch if it is None else it)

    def resume(self, checkpoint=None):
        """Load `checkpoint` ((path, loaded dict), as engine.run_dir.select_resume returns) or
        the newest intact checkpoint of OUTPUT_DIR; returns the last finished epoch (0 if none).

        The state is reconciled with model_best.pth (written after the checkpoint it follows, so
        a kill between the two must not let a worse model replace it), metrics.json loses the
        records of the unfinished epoch, and evaluations of the resumed epoch that never
        finished are queued (`pending_eval`)."""
        path, ckpt = checkpoint or select_resume(self.cfg, allow_changes=False)
        if path is None:
            return 0
        epoch, extra = self.checkpointer.load(path, ckpt)
        self.state = dict(extra)
        best = os.path.join(self.cfg.OUTPUT_DIR, "model_best.pth")
        if self.has_val and os.path.isfile(best):
            saved = load_checkpoint(best, mmap=True).get("extra") or {}
            if saved.get("best_val_mAP", float("-inf")) > self.state.get(
                "best_val_mAP", float("-inf")
            ):
                self.state.update(
                    best_val_mAP=saved["best_val_mAP"], best_epoch=saved.get("best_epoch")
                )
        done = None
        if comm.is_main_process():
            done = {r.get("split") for r in trim_records(self.cfg.OUTPUT_DIR, epoch)}
        done = comm.broadcast_object(done)
        self.pending_eval = tuple(s for s in Evaluate.splits_due(self, epoch) if s not in done)
        return epoch

    def train(self, resume=False, checkpoint=None):
        """Train to SOLVER.MAX_EPOCHS; with `resume` (or a `checkpoint` from
        engine.run_dir.select_resume) continue after the checkpoint's epoch."""
        start = self.resume(checkpoint) + 1 if resume or checkpoint else 1
        self.epoch = start - 1
        prov = provenance(self.cfg, self.device)
        # purge_step: TensorBoard drops the events of the unfinished epoch that is redone.
        self.writer = EventWriter(
            self.cfg.OUTPUT_DIR,
            {k: prov[k] for k in ("git_commit", "device", "seed", "world_size")},
            purge_step=self.step_of(start, 1) if start > 1 else None,
        )
        try:
            for h in self.hooks:
                h.before_train()
            for epoch in range(start, self.max_epochs + 1):
                self.epoch = epoch
                for h in self.hooks:
                    h.before_epoch()
                self.run_epoch()
                self.sync_buffers()
                for h in self.hooks:
                    h.after_epoch()
            for h in self.hooks:
                h.after_train()
        except BaseException:
            self.checkpointer.wait(raise_error=False)  # the file in flight is completed
            raise
        finally:
            self.writer.close()
            self.loader.close()
        return self.results

    def sync_buffers(self):
        """Rank 0's buffers (BatchNorm running statistics) on every rank, so that evaluation and
        checkpoints see one model. DDP broadcasts them the same way before each training
        forward, so training computes exactly what it did without this."""
        if comm.get_world_size() > 1:
            for buf in self.model.buffers():
                torch.distributed.broadcast(buf, src=0)

    def run_epoch(self):
        self.loader.set_epoch(self.epoch)
        self.train_model.train()
        batches = self._batches()
        if comm.is_main_process() and sys.stdout.isatty():
            self.pbar = tqdm(
                batches,
                total=self.iters_per_epoch,
                dynamic_ncols=True,
                desc=f"epoch {self.epoch}/{self.max_epochs}",
                leave=False,
            )
            batches = self.pbar
        try:
            for it, batch in enumerate(batches, start=1):
                self.iter = it
                self.run_step(batch)
                for h in self.hooks:
                    h.after_step()
        finally:
            if self.pbar is not None:
                self.pbar.close()
                self.pbar = None

    def _batches(self):
        """The epoch's batches, started without touching the global torch RNG.

        A DataLoader draws its workers' base seed from the global RNG when it starts a pass, and
        the train loader starts one only when its batch stream (re)starts, so a resumed run would
        draw in another epoch than the uninterrupted one and shift the model's dropout stream.
        """
        state = torch.get_rng_state()
        it = iter(self.loader)
        first = next(it, None)
        torch.set_rng_state(state)
        return it if first is None else itertools.chain([first], it)

    def run_step(self, batch):
        batch = to_device(batch, self.device)
        if uses_cuda_graphs(self.cfg):
            torch.compiler.cudagraph_mark_step_begin()  # a new step: earlier outputs may be reused
        with autocast(self.device, self.amp_dtype):
            out = self.train_model(batch)
        losses = {k: v for k, v in out.items() if k.startswith("loss_")}
        if not losses:
            raise KeyError(f"the model's training output has no loss_* key: {sorted(out)}")
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.cfg.SOLVER.GRAD_CLIP > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.SOLVER.GRAD_CLIP)
        self.scaler.step(self.optimizer)
        if self.scaler.is_enabled():
            scale = self.scaler._scale.clone()  # the device tensor: no host sync
            self.scaler.update()
            # update() lowers the scale exactly when it found inf/NaN gradients and step()
            # skipped the optimizer; the count stays on the device until the epoch ends.
            self.skipped_steps += (self.scaler._scale < scale).sum()
        self._accumulate({"loss_total": total, **out})

    def _accumulate(self, values):
        """Device-side window sums, and for each key the first iteration it was non-finite: a few
        kernels on one stacked vector, whatever the number of values."""
        keys = sorted(values)
        v = torch.stack([values[k].detach().float().reshape(()) for k in keys])
        w = self._window
        if not w:
            w = self._window = {
                "keys": keys,
                "sum": torch.zeros_like(v),
                "first_bad": torch.full_like(v, -1.0),
                "n": 0,
            }
        elif w["keys"] != keys:
            raise RuntimeError(f"the training outputs changed from {w['keys']} to {keys}")
        w["first_bad"] = torch.where(
            (w["first_bad"] < 0) & ~torch.isfinite(v), float(self.iter), w["first_bad"]
        )
        w["sum"] = w["sum"] + torch.nan_to_num(v)
        w["n"] += 1

    def take_skipped_steps(self):
        """Optimizer steps GradScaler skipped since the last call, summed over ranks (a host
        sync); None without a GradScaler."""
        if not self.scaler.is_enabled():
            return None
        n, self.skipped_steps = self.skipped_steps, torch.zeros_like(self.skipped_steps)
        return int(comm.all_reduce_max(n.clone()).item())

    def flush_window(self):
        """Mean of each value over the window and over ranks (one host sync); raises
        NonFiniteLossError naming epoch, iteration and key if any loss was NaN or inf."""
        w, self._window = self._window, {}
        if not w:
            return {}
        keys = w["keys"]
        first_bad = comm.all_reduce_max(w["first_bad"])
        means = (comm.reduce_mean(w["sum"]) / w["n"]).tolist()
        bad = first_bad.tolist()
        broken = [(int(it), k) for it, k in zip(bad, keys) if it >= 0 and k.startswith("loss_")]
        if broken:
            it, key = min(broken)
            raise NonFiniteLossError(
                f"non-finite loss: {key} at epoch {self.epoch}, iteration {it}/"
                f"{self.iters_per_epoch}; stopped without saving this epoch (the last good "
                f"checkpoint is kept in {self.cfg.OUTPUT_DIR})"
            )
        return dict(zip(keys, means))
