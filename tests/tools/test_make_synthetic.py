"""tools/make_synthetic_dataset.py writes loadable sets in the real layouts, says how each was made
(synthetic.json), keeps a set made with the same parameters and refuses any other folder."""

import os
import subprocess
import sys

from data.datasets import scan_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ("--train-ids", "8", "--test-ids", "3", "--images-per-id", "4", "--size-factor", "0.25")


def _cli(root, *args):
    return subprocess.run(
        [sys.executable, "tools/make_synthetic_dataset.py", root, *args, "--workers", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_all_four_and_keeps_only_the_same_set(tmp_path):
    root = str(tmp_path / "root")
    out = _cli(root, "--dataset", "all", *TINY)
    assert out.returncode == 0, out.stderr
    for name in ("RGBNT201", "RGBNT100", "MSVR310", "WMVEID863"):
        assert name in out.stdout
        splits, problems = scan_dataset(root, name, ("RGB", "NI", "TI"))
        assert not problems and len(splits.train) == 32
    same = _cli(root, "--dataset", "MSVR310", *TINY)
    assert same.returncode == 0 and "already holds this set" in same.stdout
    other = _cli(root, "--dataset", "MSVR310", *TINY, "--hardness", "1")
    assert other.returncode == 1
    assert "MSVR310/synthetic.json records hardness 0.0 (asked: 1.0)" in other.stderr


def test_a_folder_it_did_not_finish_is_named_not_reused(tmp_path):
    """A dataset folder without synthetic.json (written by hand, or by a run killed before its
    last file) is neither reused nor written over."""
    root = tmp_path / "root"
    (root / "RGBNT201" / "train_171").mkdir(parents=True)
    out = _cli(str(root), "--dataset", "RGBNT201", *TINY)
    assert out.returncode == 1
    assert "RGBNT201/synthetic.json is missing or unreadable" in out.stderr
    assert "remove the folder first" in out.stderr
