"""WMVEID863: the registered nested layout, DeMo's flat MSVWild863 layout, the protocol chosen from
the file names, and broken copies named file by file."""

import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from data import DatasetError, build_dataset
from data.datasets import find_problems, scan_dataset
from data.datasets.wmveid863 import parse_flat, parse_nested
from data.synthetic import plan_counts

MODS = ("RGB", "NI", "TI")


def _copy(synthetic_root, tmp_path):
    dst = tmp_path / "root"
    shutil.copytree(os.path.join(synthetic_root, "WMVEID863"), dst / "WMVEID863")
    return dst


def _files(root):
    """Every image path under root, sorted."""
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


def test_registered_layout_counts(smoke_cfg, synthetic_root):
    s = build_dataset(smoke_cfg("DATASETS.NAMES", "WMVEID863"))
    counts = plan_counts("WMVEID863", train_ids=8, test_ids=3, images_per_id=5)
    assert (s.name, s.num_cameras, s.protocol) == ("WMVEID863", 8, "scene")
    assert len(s.train) == counts["train"]["images"] == 40
    assert len(s.gallery) == counts["gallery"]["images"] == 15
    assert len(s.query) == counts["query"]["images"]
    assert s.num_train_pids == 8 and sorted({r.pid for r in s.train}) == list(range(8))
    base = os.path.join(synthetic_root, "WMVEID863")
    raw_train = sorted(int(d) for d in os.listdir(os.path.join(base, "train")))
    assert len(raw_train) == 8 and raw_train != list(range(8))  # relabelled, not the folder names
    for split, recs in (("query", s.query), ("test", s.gallery)):
        assert sorted({r.pid for r in recs}) == sorted(
            int(d) for d in os.listdir(os.path.join(base, split))
        )  # raw ids
    # camera and scene are the digits of each name; test is the gallery, query its own folder
    for split, recs in (("train", s.train), ("query", s.query), ("test", s.gallery)):
        for r in recs:
            m = re.match(r"\d{4}_s(\d{3})_v(\d)_\d{3}\.jpg$", os.path.basename(r.key))
            assert (r.sceneid, r.camid) == (int(m.group(1)), int(m.group(2)))
            assert r.key.split(os.sep)[-4] == split
            assert [p.split(os.sep)[-2] for p in r.files.values()] == ["vis", "ni", "th"]
            assert len({os.path.basename(p) for p in r.files.values()}) == 1
    assert len({r.camid for r in s.train}) > 2 and len({r.sceneid for r in s.train}) > 8
    for q in s.query:  # each query keeps a match of another scene
        assert any(g.pid == q.pid and g.sceneid != q.sceneid for g in s.gallery), q.key


@pytest.mark.parametrize(
    "name, expected",
    [
        ("0001_s001_v1_000.jpg", (7, 1, 1)),
        ("0863_s120_v0_041.jpg", (7, 0, 120)),
        ("0012_v7_003.jpg", (7, 7, -1)),
        ("0012_n1_v3_003.jpg", (7, 3, -1)),
    ],
)
def test_parse_nested(name, expected):
    assert parse_nested(name, 7) == expected


@pytest.mark.parametrize(
    "name, match",
    [
        ("0001_s001_000.jpg", "one view field"),
        ("0001_s001_v12_000.jpg", "one view field"),
        ("0001_v1_v2_000.jpg", "one view field"),
        ("0001_s001_v8_000.jpg", "camera 8 outside 0..7"),
        ("0001_s001_s002_v1_000.jpg", "more than one scene"),
    ],
)
def test_parse_nested_bad(name, match):
    with pytest.raises(ValueError, match=match):
        parse_nested(name, 1)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("000123_cam3_0_05.jpg", (123, 2, -1)),
        ("7_cam1_x.jpg", (7, 0, -1)),
        ("000123_cam8_0_05.jpg", (123, 7, -1)),
    ],
)
def test_parse_flat(name, expected):
    assert parse_flat(name) == expected


@pytest.mark.parametrize(
    "name", ["000123_cam0_0.jpg", "000123_cam9_0.jpg", "cam3_000123.jpg", "000123_c3_0.jpg"]
)
def test_parse_flat_bad(name):
    with pytest.raises(ValueError, match="cam"):
        parse_flat(name)


def _write(path, value=100):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((16, 32, 3), value, np.uint8)).save(path)


FLAT = {  # split folder -> names written in each of vis, ni, th
    "train": [
        "000010_cam1_0_00.jpg",
        "000010_cam2_0_01.jpg",
        "000011_cam8_0_00.jpg",
        "000011_cam3_1_02.jpg",
        "000011_cam3_1_03.jpg",
    ],
    "query": ["000020_cam1_0_00.jpg", "000021_cam4_0_00.jpg"],
    "test": ["000020_cam2_0_01.jpg", "000020_cam1_0_02.jpg", "000021_cam5_0_01.jpg"],
}


def _flat_root(tmp_path):
    root = tmp_path / "flat"
    for split, names in FLAT.items():
        for m in ("vis", "ni", "th"):
            for i, n in enumerate(names):
                _write(str(root / "MSVWild863" / split / m / n), 40 + 10 * i)
    return root


def test_flat_msvwild863_layout(smoke_cfg, tmp_path):
    s = build_dataset(smoke_cfg("DATASETS.NAMES", "WMVEID863", root=str(_flat_root(tmp_path))))
    assert (s.num_cameras, s.protocol) == (8, "market")  # the names carry no scene
    assert [(r.pid, r.camid) for r in s.train] == [(0, 0), (0, 1), (1, 2), (1, 2), (1, 7)]
    assert [(r.pid, r.camid) for r in s.query] == [(20, 0), (21, 3)]
    assert sorted((r.pid, r.camid) for r in s.gallery) == [(20, 0), (20, 1), (21, 4)]
    assert all(r.sceneid == -1 for r in s.train + s.query + s.gallery)
    r = s.query[0]
    assert [p.split(os.sep)[-3:] for p in r.files.values()] == [
        ["query", m, "000020_cam1_0_00.jpg"] for m in ("vis", "ni", "th")
    ]


def test_protocol_follows_the_names(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    # Drop the scene field from every name: the camera rule applies.
    for path in _files(root):
        os.rename(path, re.sub(r"_s\d{3}_", "_", path))
    splits, problems = scan_dataset(str(root), "WMVEID863", MODS)
    recs = splits.train + splits.query + splits.gallery
    assert not problems and splits.protocol == "market" and len(splits.train) == 40
    assert all(r.sceneid == -1 for r in recs)
    # One name (in its three modality folders) gets a scene back: mixed names are refused.
    victim = next(p for p in _files(root) if os.sep + "vis" + os.sep in p)
    for m in ("vis", "ni", "th"):
        p = victim.replace(os.sep + "vis" + os.sep, os.sep + m + os.sep)
        os.rename(p, p.replace("_v", "_s007_v", 1))
    splits, problems = scan_dataset(str(root), "WMVEID863", MODS)
    named = victim.replace("_v", "_s007_v", 1)
    assert problems == [
        f"file name carries a scene (s<digits>) while {len(recs) - 1} other names "
        "do not; the "
        f"evaluation protocol needs scenes in all names or in none: {named}"
    ]


def test_folder_choice_and_missing_folders(smoke_cfg, synthetic_root, tmp_path):
    with pytest.raises(
        DatasetError,
        match=r"missing folder .*WMVEID863 \(or .*MSVWild863\); "
        r"expected layout: WMVEID863/\{train,query,test\}/<id>/\{vis,ni,th\}/.* or "
        r"MSVWild863/\{train,query,test\}/\{vis,ni,th\}/<pid>_cam<k>_<n>\.jpg",
    ):
        build_dataset(smoke_cfg("DATASETS.NAMES", "WMVEID863", root=str(tmp_path / "empty")))
    root = _copy(synthetic_root, tmp_path)
    os.makedirs(root / "MSVWild863")
    _, problems = scan_dataset(str(root), "WMVEID863", MODS)
    assert len(problems) == 1 and problems[0].startswith(
        f"both {root / 'WMVEID863'} and {root / 'MSVWild863'} exist"
    )
    os.rmdir(root / "MSVWild863")
    shutil.rmtree(root / "WMVEID863" / "query")
    _, problems = scan_dataset(str(root), "WMVEID863", MODS)
    assert problems == [
        f"missing folder {root / 'WMVEID863' / 'query'}; expected layout: "
        "WMVEID863/{train,query,test}/<id>/{vis,ni,th}/<...>_v<K>_<...>.jpg"
    ]


def test_flat_files_under_the_nested_name_get_a_hint(tmp_path):
    flat = _flat_root(tmp_path)
    os.rename(flat / "MSVWild863", flat / "WMVEID863")
    _, problems = scan_dataset(str(flat), "WMVEID863", MODS)
    assert all("name the dataset folder MSVWild863/ instead" in p for p in problems)
    assert [p.split(": ")[1].split(" (")[0] for p in problems] == [
        str(flat / "WMVEID863" / split / m)
        for split in ("train", "query", "test")
        for m in ("ni", "th", "vis")
    ]


def test_broken_copy_is_named_file_by_file(smoke_cfg, synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    ident = sorted(os.listdir(root / "WMVEID863" / "train"))[0]
    id_dir = root / "WMVEID863" / "train" / ident
    names = sorted(os.listdir(id_dir / "vis"))
    os.remove(id_dir / "th" / names[0])  # a missing th file
    renamed = names[1].replace(".jpg", "x.jpg")  # a name that differs between modality folders
    os.rename(id_dir / "ni" / names[1], id_dir / "ni" / renamed)
    with open(id_dir / "vis" / names[2], "r+b") as f:  # an unreadable (truncated) image
        f.truncate(os.path.getsize(id_dir / "vis" / names[2]) // 2)
    _write(str(root / "WMVEID863" / "test" / "stray.jpg"))  # an image outside any id folder
    _, problems = find_problems(str(root), "WMVEID863", MODS, workers=1)
    assert len(problems) == 6, problems
    vis, ni, th = (id_dir / m for m in ("vis", "ni", "th"))
    expected = [
        f"missing sibling modality file {th / names[0]} (of {vis / names[0]})",
        f"missing sibling modality file {ni / names[1]} (of {vis / names[1]})",
        f"missing sibling modality file {vis / renamed} (of {ni / renamed})",
        f"missing sibling modality file {th / renamed} (of {ni / renamed})",
        f"image outside an <id>/{{vis,ni,th}}/ folder: {root / 'WMVEID863' / 'test' / 'stray.jpg'}",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), line
    assert any(
        p.startswith(f"unreadable or truncated image {id_dir / 'vis' / names[2]}") for p in problems
    )
    # Training refuses the folder and names the files (decoding is left to the loaders and to
    # tools/check_dataset.py).
    with pytest.raises(DatasetError, match="5 problem") as err:
        build_dataset(smoke_cfg("DATASETS.NAMES", "WMVEID863", root=str(root)))
    assert str(id_dir / "th" / names[0]) in str(err.value)
    assert str(id_dir / "ni" / names[1]) in str(err.value)


def test_configs_and_name_validation():
    from config import ConfigError, load_config

    for f in ("DeMo.yml", "DeMo_SDTPS.yml"):
        cfg = load_config(os.path.join("configs", "WMVEID863", f))
        assert cfg.DATASETS.NAMES == "WMVEID863" and cfg.INPUT.SIZE_TRAIN == (128, 256)
        assert (cfg.MODEL.HEAD, cfg.MODEL.JOINT_ORI_HEAD) == (8, False)
        assert cfg.MODEL.USE_SDTPS == (f == "DeMo_SDTPS.yml")
    # The choices come from the dataset registry.
    with pytest.raises(
        ConfigError,
        match=r"DATASETS.NAMES 'WMVEID' is not one of \('MSVR310', "
        r"'RGBNT100', 'RGBNT201', 'WMVEID863'\)",
    ):
        load_config("configs/_smoke/DeMo.yml", ["DATASETS.NAMES", "WMVEID"])
