"""tools/extract_features.py on a 1-epoch smoke checkpoint: shapes and ids of the saved features,
and that tools/eval_suite.py --features reproduces the model's evaluation."""

import os
import shutil

import numpy as np
import pytest
import torch

from config import load_config
from data import build_dataset
from engine import defaults, evaluate
from tools import eval_suite, extract_features
from utils.feature_files import load_split


def test_split_features_and_features_suite_match_evaluation(sdtps_args, tmp_path):
    out = tmp_path / "feats"
    extract_features.main([*sdtps_args, "--split", "all", "--pattern", "3", "--out", str(out)])
    cfg = load_config(sdtps_args[1], sdtps_args[2:])
    splits = build_dataset(cfg)
    for split in ("query", "gallery", "train"):
        feats, ids, meta = load_split(out, split)
        n = len(getattr(splits, split))
        assert feats.shape == (n, 384) and feats.dtype == np.float32  # ori 3x64 + fused 3x64
        assert all(ids[k].shape == (n,) and ids[k].dtype == np.int64 for k in ids)
        assert ids["pid"].tolist() == [r.pid for r in getattr(splits, split)]
        assert meta["pattern"] == 3 and meta["num"] == n and len(meta["paths"]["TI"]) == n
    res = eval_suite.main(
        ["--config_file", sdtps_args[1], "--features", str(out), "--out", str(tmp_path / "suite")]
    )
    model = defaults.load_model(cfg, torch.device("cpu"), splits)
    ref = evaluate(cfg, model, splits)[3]
    for k in ("mAP", "R1", "mINP"):
        assert res["none"][3][k] == pytest.approx(ref[k], abs=1e-6)
    assert (tmp_path / "suite" / "suite.json").exists()


def test_folder_of_triplets(sdtps_args, tmp_path):
    src = os.path.join(sdtps_args[3], "RGBNT201", "test")
    name = sorted(os.listdir(os.path.join(src, "RGB")))[0]
    for mod in ("RGB", "NI", "TI"):
        os.makedirs(tmp_path / "in" / mod)
        shutil.copy(os.path.join(src, mod, name), tmp_path / "in" / mod / name)
        shutil.copy(os.path.join(src, mod, name), tmp_path / "in" / mod / "unnamed.jpg")
    extract_features.main(
        [
            *sdtps_args,
            "--folder",
            str(tmp_path / "in"),
            "--pattern",
            "1",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    feats, ids, meta = load_split(tmp_path / "out", "folder")
    assert feats.shape == (2, 192) and meta["pattern"] == 1
    pid = int(name.split("_")[0])
    cam = int(name.split("_cam")[1].split("_")[0]) - 1
    assert ids["pid"].tolist() == [pid, -1] and ids["camid"].tolist() == [cam, 0]
    # the same image under another name gets the same features when the camera matches
    if cam == 0:
        np.testing.assert_allclose(feats[0], feats[1], atol=1e-5)
