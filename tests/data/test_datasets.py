"""Building the splits: relabelling, protocols, validation split, bad folders."""

import os
import shutil

import pytest

from data import DatasetError, build_dataset
from data.datasets import find_problems, read_images


@pytest.mark.parametrize(
    "name, cams, protocol, n_query",
    [
        ("RGBNT201", 4, "market", 15),
        ("RGBNT100", 8, "market", None),
        ("MSVR310", 8, "scene", None),
        ("WMVEID863", 8, "scene", None),
    ],
)
def test_splits(smoke_cfg, name, cams, protocol, n_query):
    s = build_dataset(smoke_cfg("DATASETS.NAMES", name))
    assert (s.name, s.num_cameras, s.protocol) == (name, cams, protocol)
    assert s.num_train_pids == 8 and sorted({r.pid for r in s.train}) == list(range(8))
    assert len(s.train) == 40 and len(s.gallery) == 15
    assert len({r.pid for r in s.query}) == len({r.pid for r in s.gallery}) == 3
    assert not s.val_query and not s.val_gallery
    if n_query:  # RGBNT201: query = gallery = test
        assert [r.key for r in s.query] == [r.key for r in s.gallery]
    for r in s.train + s.query + s.gallery:
        assert set(r.files) == {"RGB", "NI", "TI"} and 0 <= r.camid < cams
        assert (r.sceneid >= 0) == (name in ("MSVR310", "WMVEID863"))
    # every query keeps a valid match under its protocol
    field = "sceneid" if protocol == "scene" else "camid"
    for q in s.query:
        assert any(g.pid == q.pid and getattr(g, field) != getattr(q, field) for g in s.gallery), (
            q.key
        )


def test_test_ids_raw_and_strip(smoke_cfg):
    s = build_dataset(smoke_cfg("DATASETS.NAMES", "RGBNT100"))
    r = s.query[0]
    assert int(os.path.basename(r.key).split("_")[0]) == r.pid
    assert len(set(r.files.values())) == 1 and r.strip_index == {"RGB": 0, "NI": 1, "TI": 2}
    imgs = read_images(r)
    assert [im.size for im in imgs.values()] == [(64, 32)] * 3


def test_modality_names_follow_config(smoke_cfg):
    s = build_dataset(smoke_cfg("DATASETS.NAMES", "MSVR310", "INPUT.MODALITIES", "('V','N','T')"))
    r = s.train[0]
    assert list(r.files) == ["V", "N", "T"] and r.files["T"].split(os.sep)[-2] == "th"


def test_validation_split(smoke_cfg):
    full = build_dataset(smoke_cfg())
    s = build_dataset(smoke_cfg("DATASETS.VAL_FRACTION", 0.25, "SOLVER.SEED", 3))
    val_ids = {r.pid for r in s.val_query} | {r.pid for r in s.val_gallery}
    assert len(val_ids) == 2 and {r.pid for r in s.val_query} == val_ids
    train_keys = {r.key for r in s.train}
    val_keys = {r.key for r in s.val_query + s.val_gallery}
    assert not train_keys & val_keys and len(train_keys | val_keys) == len(full.train)
    assert s.num_train_pids == 6 and sorted({r.pid for r in s.train}) == list(range(6))
    assert len({(r.pid, r.camid) for r in s.val_query}) == len(s.val_query)
    again = build_dataset(smoke_cfg("DATASETS.VAL_FRACTION", 0.25, "SOLVER.SEED", 3))
    assert [r.key for r in again.val_query] == [r.key for r in s.val_query]


def _copy(root, tmp_path, name):
    dst = tmp_path / "root"
    shutil.copytree(os.path.join(root, name), dst / name)
    return str(dst)


def test_missing_folder(smoke_cfg, synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path, "RGBNT201")
    shutil.rmtree(os.path.join(root, "RGBNT201", "test", "NI"))
    layout = r"test/NI.*expected layout: RGBNT201/\{train_171,test\}"
    with pytest.raises(DatasetError, match=layout):
        build_dataset(smoke_cfg(root=root))


def test_missing_sibling_and_bad_name(smoke_cfg, synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path, "MSVR310")
    split = os.path.join(root, "MSVR310", "bounding_box_train")
    ident = sorted(os.listdir(split))[0]
    victim = sorted(os.listdir(os.path.join(split, ident, "th")))[0]
    os.remove(os.path.join(split, ident, "th", victim))
    for m in ("vis", "ni", "th"):
        src = os.path.join(split, ident, "vis", victim)
        shutil.copy(src, os.path.join(split, ident, m, "x.jpg"))
    cfg = smoke_cfg("DATASETS.NAMES", "MSVR310", root=root)
    with pytest.raises(DatasetError) as err:
        build_dataset(cfg)
    assert os.path.join(ident, "th", victim) in str(err.value)
    assert "does not parse" in str(err.value)
    assert os.path.join(ident, "vis", "x.jpg") in str(err.value)
    _, problems = find_problems(root, "MSVR310", cfg.INPUT.MODALITIES)
    assert len(problems) == 2
