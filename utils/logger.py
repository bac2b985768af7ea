"""One logging set-up: stdout + OUTPUT_DIR/log.txt on rank 0, warnings only elsewhere."""

import logging
import os
import sys

from . import comm

_FMT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"


def setup_logger(output_dir=None, name="log.txt"):
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    main = comm.is_main_process()
    root.setLevel(logging.INFO if main else logging.WARNING)
    fmt = logging.Formatter(_FMT, datefmt="%m/%d %H:%M:%S")
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
    return root
