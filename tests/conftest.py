"""Shared fixtures: a tiny synthetic dataset root and smoke configs pointing at it.

`synthetic_root`: a session-wide tmp folder holding every dataset of data.synthetic.DATASETS
(RGBNT201, RGBNT100, MSVR310, WMVEID863) in their real layouts, 8 train ids x 5 images and 3 test
ids, at a quarter of the real image size (persons 64x32, vehicles 32x64, RGBNT100 strips 32x192).
`smoke_cfg(*opts, config="DeMo.yml")`: configs/_smoke/<config> with DATASETS.ROOT_DIR set to
`synthetic_root`, plus KEY VALUE overrides (e.g. "DATASETS.NAMES", "MSVR310"); frozen.
`fast(epochs, *extra)`: KEY VALUE overrides that make a smoke run take seconds (4 ids x 2 images a
batch, `epochs` epochs with 1 of warm-up, a log line every iteration, test batches of 16), then
`extra`.
`old_names(text)`: a dumped config (config.yaml, a checkpoint's cfg) as the versions before the
renames wrote it, with DeMo's key names and value forms.
"""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from config import load_config  # noqa: E402
from data.synthetic import DATASETS, make_synthetic  # noqa: E402

TINY = {"train_ids": 8, "test_ids": 3, "images_per_id": 5, "size_factor": 0.25, "workers": 1}


@pytest.fixture(scope="session", autouse=True)
def compile_cache(tmp_path_factory):
    """torch.compile's cache in this run's temp folder: no test reads graphs compiled by an earlier
    run (or another tree), and a passing run leaves none behind (only torch's precompiled header,
    about 150 MB an installation, stays in its default folder). Subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
        yield


@pytest.fixture(scope="session")
def fast():
    def overrides(epochs, *extra):
        return [
            *("SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "2"),
            *("SOLVER.MAX_EPOCHS", str(epochs), "SOLVER.WARMUP_EPOCHS", "1"),
            *("SOLVER.LOG_PERIOD", "1", "TEST.IMS_PER_BATCH", "16"),
            *extra,
        ]

    return overrides


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    for name in DATASETS:
        make_synthetic(str(root), name, seed=0, **TINY)
    return str(root)


@pytest.fixture
def smoke_cfg(synthetic_root):
    def make(*opts, config="DeMo.yml", root=None):
        path = os.path.join(REPO, "configs", "_smoke", config)
        return load_config(path, ["DATASETS.ROOT_DIR", root or synthetic_root, *opts])

    return make


# Today's keys in a dumped config -> DeMo's names and value forms (config/validate.py's legacy
# table reads them back).
OLD_NAMES = {
    "  WARMUP_EPOCHS:": "  WARMUP_ITERS:",
    "  FLIP_PROB:": "  PROB:",
    "  JOINT_ORI_HEAD: true": "  DIRECT: 1",
    "  JOINT_ORI_HEAD: false": "  DIRECT: 0",
    "  MISSING_MODALITIES: []": "  MISS: none",
}


@pytest.fixture
def old_names():
    def convert(text):
        for new, old in OLD_NAMES.items():
            text = text.replace(new, old)
        left = [
            k
            for k in ("WARMUP_EPOCHS", "FLIP_PROB", "JOINT_ORI_HEAD", "MISSING_MODAL")
            if k in text
        ]
        assert not left, f"not converted: {left}"
        return text

    return convert
