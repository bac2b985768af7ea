"""train_net.py for one epoch on the tiny synthetic WMVEID863 (vehicle input size): the run ends
with test metrics under the scene protocol its file names choose."""

import json
import os

import pytest
import yaml


@pytest.mark.slow
def test_one_epoch_on_wmveid863_ends_with_metrics(cli, tmp_path):
    res = cli(
        "train_net.py",
        tmp_path,
        "DATASETS.NAMES",
        "WMVEID863",
        "INPUT.SIZE_TRAIN",
        "[32, 64]",
        "INPUT.SIZE_TEST",
        "[32, 64]",
        "SOLVER.MAX_EPOCHS",
        "1",
        "DATALOADER.NUM_WORKERS",
        "0",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    derived = yaml.safe_load(open(tmp_path / "config.yaml"))["DERIVED"]
    assert (derived["num_classes"], derived["num_cameras"]) == (8, 8)
    assert derived["protocol"] == "scene" and derived["num_patches"] == 32  # 4 x 8 patches
    lines = [json.loads(x) for x in open(tmp_path / "metrics.json")]
    (final,) = [x for x in lines if x["type"] == "eval"]
    assert final["epoch"] == 1 and set(final["results"]) == {"1", "2", "3"}
    for metrics in final["results"].values():
        assert set(metrics) == {"mAP", "mINP", "R1", "R5", "R10"}
        assert all(0 <= v <= 100 for v in metrics.values())
    log = open(tmp_path / "log.txt").read()
    assert "WMVEID863 (scene protocol, 8 cameras)" in log
    assert os.path.exists(tmp_path / "model_final.pth")
