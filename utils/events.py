"""Run records on rank 0: `metrics.json` (one JSON object a line) and TensorBoard scalars."""

import json
import logging
import math
import os
import time

from . import comm

logger = logging.getLogger(__name__)


class EventWriter:
    """Appends records to OUTPUT_DIR/<metrics_name> and scalars to TensorBoard event files under
    OUTPUT_DIR/<tb_subdir>; a no-op off rank 0.

    A training run writes metrics.json and events in OUTPUT_DIR; evaluations outside training
    (test_net.py, --eval-only) keep their own test_metrics.json and test_events/ beside them.
    provenance: a small dict (git commit, seed, world size, device) stamped on every JSON line.
    purge_step: TensorBoard hides earlier events at or after this step (a resumed run redoes
    them).
    """

    def __init__(
        self,
        output_dir,
        provenance=None,
        tensorboard=True,
        metrics_name="metrics.json",
        tb_subdir="",
        purge_step=None,
    ):
        self.enabled = comm.is_main_process() and bool(output_dir)
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, metrics_name) if output_dir else None
        self.provenance = provenance or {}
        self._tb = None
        if self.enabled:
            os.makedirs(output_dir, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(
                        log_dir=os.path.join(output_dir, tb_subdir), purge_step=purge_step
                    )
                except ImportError:
                    logger.warning("tensorboard is not installed: no event files are written")

    def write(self, record, scalars=None, step=None):
        """Append `record` (JSON-able) to metrics.json; `scalars` {tag: float} to TensorBoard."""
        if not self.enabled:
            return
        line = {"time": round(time.time(), 3), **record, "provenance": self.provenance}
        with open(self.path, "a") as f:
            f.write(json.dumps(line, allow_nan=True) + "\n")
        if self._tb is not None and scalars:
            for tag, value in scalars.items():
                if value is not None and math.isfinite(value):
                    self._tb.add_scalar(tag, value, step)
            self._tb.flush()

    def close(self):
        if self._tb is not None:
            self._tb.close()
            self._tb = None
