"""tools/make_synthetic_dataset.py writes loadable sets in the real layouts."""

import os
import subprocess
import sys

from data.datasets import scan_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_writes_all_four(tmp_path):
    root = str(tmp_path / "root")
    out = subprocess.run(
        [
            sys.executable,
            "tools/make_synthetic_dataset.py",
            root,
            "--dataset",
            "all",
            "--train-ids",
            "8",
            "--test-ids",
            "3",
            "--images-per-id",
            "4",
            "--size-factor",
            "0.25",
            "--workers",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for name in ("RGBNT201", "RGBNT100", "MSVR310", "WMVEID863"):
        assert name in out.stdout
        splits, problems = scan_dataset(root, name, ("RGB", "NI", "TI"))
        assert not problems and len(splits.train) == 32
    again = subprocess.run(
        [sys.executable, "tools/make_synthetic_dataset.py", root, "--dataset", "MSVR310"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 1 and "exists" in again.stderr
