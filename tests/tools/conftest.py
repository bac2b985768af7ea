"""Fixtures of the tools' tests: 1-epoch smoke checkpoints trained once per session."""

import logging
import os

import pytest

import train_net

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def keep_logging():
    """The tools set up the root logger (stdout handler); give pytest its handlers back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def trained(root, base, config, schedule):
    """Arguments naming a 1-epoch smoke checkpoint of configs/_smoke/<config>, trained once per
    session (cached in the session's temporary folder)."""
    out = base / "tools_ckpt" / config.split(".")[0]
    weight = out / "model_final.pth"
    if not weight.exists():
        train_net.cli(
            [
                "--config_file",
                os.path.join(REPO, "configs", "_smoke", config),
                "DATASETS.ROOT_DIR",
                root,
                "OUTPUT_DIR",
                str(out),
                *schedule,
            ]
        )
    return [
        "--config_file",
        os.path.join(REPO, "configs", "_smoke", config),
        "DATASETS.ROOT_DIR",
        root,
        "TEST.WEIGHT",
        str(weight),
        "OUTPUT_DIR",
        str(out),
    ]


@pytest.fixture(scope="session")
def sdtps_args(synthetic_root, tmp_path_factory, fast):
    return trained(synthetic_root, tmp_path_factory.getbasetemp(), "DeMo_SDTPS.yml", fast(1))


@pytest.fixture(scope="session")
def smoke_checkpoint(synthetic_root, tmp_path_factory, fast):
    """smoke_checkpoint(config) -> the tool arguments of that config's cached checkpoint."""
    base = tmp_path_factory.getbasetemp()
    return lambda config: trained(synthetic_root, base, config, fast(1))
