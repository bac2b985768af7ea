"""Trainer hooks: LR schedule, periodic logging / writers, evaluation, checkpoints.

Each hook sees the trainer (`self.trainer`) and may act before/after training, before/after each
epoch and after each step. The order in `Trainer.hooks` is the order they run.
"""

import datetime
import logging
import os
import time

from utils import comm
from utils.checkpoint import FINAL, RESUME

logger = logging.getLogger(__name__)


class HookBase:
    trainer = None

    def before_train(self):
        pass

    def before_epoch(self):
        pass

    def after_step(self):
        pass

    def after_epoch(self):
        pass

    def after_train(self):
        pass


class LRSchedule(HookBase):
    """scheduler.step(epoch) at the start of every epoch 1..MAX_EPOCHS (SPEC 5)."""

    def before_epoch(self):
        t = self.trainer
        t.scheduler.step(t.epoch)
        lrs = ", ".join(f"{g['name']} {g['lr']:.3g}" for g in t.optimizer.param_groups)
        logger.info("epoch %d/%d: lr %s", t.epoch, t.max_epochs, lrs)


class PeriodicWriter(HookBase):
    """Every SOLVER.LOG_PERIOD iterations (and at epoch end): one host sync for the window's mean
    losses / accuracies, then a log line (log.txt only while a tqdm bar owns the terminal, whose
    postfix shows the losses), metrics.json and TensorBoard."""

    def before_train(self):
        self._train_start = time.perf_counter()
        self._iters_done = 0

    def before_epoch(self):
        self._epoch_start = self._window_start = time.perf_counter()
        self._window_iters = 0

    def after_step(self):
        self._window_iters += 1
        self._iters_done += 1
        if self.trainer.iter % self.trainer.cfg.SOLVER.LOG_PERIOD == 0:
            self._flush()

    def after_epoch(self):
        if self._window_iters:
            self._flush()
        t = self.trainer
        elapsed = time.perf_counter() - self._epoch_start
        speed = t.iters_per_epoch * t.cfg.SOLVER.IMS_PER_BATCH / max(elapsed, 1e-9)
        record = {
            "type": "epoch",
            "epoch": t.epoch,
            "step": t.step_of(t.epoch),
            "seconds": elapsed,
            "triplets_per_s": speed,
        }
        skipped = t.take_skipped_steps()
        if skipped is not None:  # fp16: steps GradScaler dropped for inf/NaN gradients
            record.update(amp_skipped_steps=skipped, amp_scale=t.scaler.get_scale())
        logger.info(
            "epoch %d done in %.1f s (%.1f triplets/s)%s",
            t.epoch,
            elapsed,
            speed,
            ""
            if skipped is None
            else f"; fp16: {skipped} of {t.iters_per_epoch} optimizer steps skipped, loss "
            f"scale {record['amp_scale']:g}",
        )
        scalars = {"train/epoch_seconds": elapsed}
        if skipped is not None:
            scalars.update(
                {"train/amp_skipped_steps": skipped, "train/amp_scale": record["amp_scale"]}
            )
        t.writer.write(record, scalars, record["step"])

    def _flush(self):
        t = self.trainer
        means = t.flush_window()  # syncs; raises on a non-finite loss
        now = time.perf_counter()
        per_iter = (now - self._window_start) / max(1, self._window_iters)
        self._window_start, self._window_iters = now, 0
        left = t.iters_per_epoch * (t.max_epochs - t.epoch) + t.iters_per_epoch - t.iter
        eta = datetime.timedelta(seconds=int(per_iter * left))
        speed = t.cfg.SOLVER.IMS_PER_BATCH / max(per_iter, 1e-9)
        lr = t.head_lr()
        if t.pbar is not None:
            t.pbar.set_postfix({k: f"{v:.3f}" for k, v in means.items()}, refresh=False)
        # With a bar on the terminal the periodic line still goes to log.txt.
        body = "  ".join(f"{k} {v:.4f}" for k, v in means.items())
        logger.info(
            "epoch %d iter %d/%d  %s  lr %.3g  %.1f triplets/s  eta %s",
            t.epoch,
            t.iter,
            t.iters_per_epoch,
            body,
            lr,
            speed,
            eta,
            extra={"file_only": t.pbar is not None},
        )
        step = t.step_of(t.epoch, t.iter)
        scalars = {f"train/{k}": v for k, v in means.items()}
        scalars.update({"train/lr": lr, "train/triplets_per_s": speed})
        t.writer.write(
            {
                "type": "train",
                "epoch": t.epoch,
                "iter": t.iter,
                "step": step,
                **means,
                "lr": lr,
                "triplets_per_s": speed,
            },
            scalars,
            step,
        )


class Evaluate(HookBase):
    """Evaluates every SOLVER.EVAL_PERIOD epochs and after the last one, after that epoch's
    checkpoint is started.

    With a validation split (DATASETS.VAL_FRACTION > 0) the periodic evaluation runs on it and keeps
    model_best.pth by the mAP of TEST.RETURN_PATTERN; the final model is also evaluated on test.
    Without one, evaluations run on test and report only: no model is selected on the test set.
    A resumed run first finishes the evaluations of its checkpoint's epoch that a kill cut short.
    """

    @staticmethod
    def splits_due(t, epoch):
        """The splits evaluated after `epoch`, in order."""
        period, last = t.cfg.SOLVER.EVAL_PERIOD, epoch == t.max_epochs
        if t.evaluator is None or epoch < 1 or not (last or (period > 0 and epoch % period == 0)):
            return ()
        if t.has_val:
            return ("val", "test") if last else ("val",)
        return ("test",)

    def before_train(self):
        t = self.trainer
        if t.pending_eval:
            logger.info(
                "finishing the evaluation of epoch %d (%s) cut short before the resume",
                t.epoch,
                ", ".join(t.pending_eval),
            )
            self._run(t.pending_eval)

    def after_epoch(self):
        self._run(self.splits_due(self.trainer, self.trainer.epoch))

    def _run(self, splits):
        t = self.trainer
        step = t.step_of(t.epoch)
        for split in splits:
            res = t.evaluator(t.model, split=split, writer=t.writer, step=step, epoch=t.epoch)
            if split == "test":
                t.results = res
                continue
            score = _score(res, t.cfg.TEST.RETURN_PATTERN)
            if score > t.state.get("best_val_mAP", float("-inf")):
                t.state.update(best_val_mAP=score, best_epoch=t.epoch)
                t.checkpointer.save(
                    "model_best.pth", t.epoch, t.cfg, extra=dict(t.state), iteration=step
                )
                logger.info(
                    "new best on val: mAP %.2f at epoch %d -> model_best.pth", score, t.epoch
                )


def _score(results, pattern):
    key = pattern if pattern in results else max(results)
    return results[key]["mAP"]


class Checkpoint(HookBase):
    """last.pth + `last_checkpoint` every epoch but the last, model_{epoch:04d}.pth every
    CHECKPOINT_PERIOD epochs (last KEEP_CHECKPOINTS kept), and in the last epoch's place of
    last.pth, before its evaluation, model_final.pth: one write of the full state instead of
    two, and a run killed in its final evaluation resumes from it and only evaluates (or, with
    a longer schedule, trains on from it). Files are written in the background while training
    goes on (utils/checkpoint.py); training ends once all are on disk."""

    saved_final = False  # model_final.pth written by this process

    def after_epoch(self):
        t = self.trainer
        extra, step = dict(t.state), t.step_of(t.epoch)
        last = self.saved_final = t.epoch == t.max_epochs
        t.checkpointer.save(
            FINAL if last else RESUME,
            t.epoch,
            t.cfg,
            extra=extra,
            mark_last=True,
            iteration=step,
        )
        period = t.cfg.SOLVER.CHECKPOINT_PERIOD
        if period > 0 and t.epoch % period == 0:
            t.checkpointer.save(
                f"model_{t.epoch:04d}.pth", t.epoch, t.cfg, extra=extra, iteration=step
            )

    def after_train(self):
        t = self.trainer
        # A resumed run with no epoch left to train has model_final.pth already, unless its
        # checkpoint was a last.pth of the last epoch (folders written before model_final.pth
        # took last.pth's place there).
        missing = not self.saved_final and comm.broadcast_object(
            not os.path.isfile(os.path.join(t.cfg.OUTPUT_DIR, FINAL))
        )
        if missing:
            t.checkpointer.save(
                FINAL, t.epoch, t.cfg, extra=dict(t.state), iteration=t.step_of(t.epoch)
            )
        t.checkpointer.wait()
        comm.synchronize()
