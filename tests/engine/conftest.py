"""Fixtures for the end-to-end engine tests: a CLI runner and one reference training run."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Cli:
    """Builds and runs `train_net.py` / `test_net.py` command lines on the synthetic root, with a
    fast 2-epoch schedule (a checkpoint every epoch)."""

    def __init__(self, root, schedule):
        self.root, self.schedule = root, schedule

    def command(self, name, out, *opts, config="DeMo.yml", extra=(), nproc=1):
        launcher = [sys.executable]
        if nproc > 1:
            launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd = [
            *launcher,
            os.path.join(REPO, name),
            "--config_file",
            os.path.join(REPO, "configs", "_smoke", config),
            *extra,
            "DATASETS.ROOT_DIR",
            self.root,
            "OUTPUT_DIR",
            str(out),
            *self.schedule,
            *opts,
        ]
        # One thread per process when several share the 2 cores.
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, 2 // nproc)))
        return cmd, env

    def __call__(self, name, out, *opts, **kw):
        cmd, env = self.command(name, out, *opts, **kw)
        return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="session")
def cli(synthetic_root, fast):
    return Cli(synthetic_root, fast(2, "SOLVER.CHECKPOINT_PERIOD", "1"))


@pytest.fixture(scope="session")
def full_run(cli, tmp_path_factory):
    """An uninterrupted 2-epoch DeMo smoke run, 0 workers: the reference of the resume tests."""
    out = tmp_path_factory.mktemp("full")
    res = cli("train_net.py", out, "DATALOADER.NUM_WORKERS", "0")
    assert res.returncode == 0, res.stderr[-3000:]
    return out
