"""One logging set-up: stdout + OUTPUT_DIR/log.txt on rank 0, warnings only elsewhere.

The config is loaded before the logger can exist (OUTPUT_DIR comes from the config), yet loading
it has things to say: DeMo's legacy keys, the SDTPS exclusive switch. `capture_records` holds back
what is logged meanwhile, and `setup_logger` replays it into its handlers, so it reaches log.txt
once, on rank 0; `flush_pending` writes its warnings to a stream when no logger will come (a
config error; at exit, for a tool that never set one up), so none is lost.
"""

import atexit
import contextlib
import logging
import os
import sys

from . import comm

_FMT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"
_pending = []  # records held back by capture_records, waiting for setup_logger


class _Hold(logging.Handler):
    def emit(self, record):
        _pending.append(record)


@contextlib.contextmanager
def capture_records(level=logging.INFO):
    """Within the block, records of `level` and above are held back (not printed) until the next
    `setup_logger` or `flush_pending`; records held by an earlier block and never replayed are
    dropped. Handlers already on the root logger (a caller's own set-up) still see every record.
    """
    _pending.clear()
    root = logging.getLogger()
    hold, old_level = _Hold(level), root.level
    root.addHandler(hold)
    root.setLevel(min(old_level, level))
    try:
        yield
    finally:
        root.removeHandler(hold)
        root.setLevel(old_level)


def flush_pending(stream, level=logging.WARNING):
    """Write the held-back records of `level` and above to `stream`, and forget them all."""
    fmt = logging.Formatter(_FMT, datefmt=_DATEFMT)
    for record in _pending:
        if record.levelno >= level:
            stream.write(fmt.format(record) + "\n")
    _pending.clear()


@atexit.register
def _flush_at_exit():
    flush_pending(sys.stderr)


def setup_logger(output_dir=None, name="log.txt"):
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    main = comm.is_main_process()
    root.setLevel(logging.INFO if main else logging.WARNING)
    fmt = logging.Formatter(_FMT, datefmt=_DATEFMT)
    sh = logging.StreamHandler(sys.stdout)
    sh.setFormatter(fmt)
    # Records logged with extra={"file_only": True} (periodic lines while a progress bar owns the
    # terminal) go to log.txt only.
    sh.addFilter(lambda record: not getattr(record, "file_only", False))
    root.addHandler(sh)
    if main and output_dir:
        os.makedirs(output_dir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(output_dir, name))
        fh.setFormatter(fmt)
        root.addHandler(fh)
    # Every rank loaded the same config and said the same things: rank 0 speaks for all.
    held = list(_pending) if main else []
    _pending.clear()
    for record in held:
        root.handle(record)
    return root
