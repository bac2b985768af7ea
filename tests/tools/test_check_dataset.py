"""tools/check_dataset.py: table and exit 0 on a good folder; every problem named, exit 1."""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_check(root, *opts):
    cmd = [
        sys.executable,
        "tools/check_dataset.py",
        "--config_file",
        "configs/_smoke/DeMo.yml",
        "DATASETS.ROOT_DIR",
        str(root),
        *opts,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["RGBNT201", "RGBNT100", "MSVR310", "WMVEID863"])
def test_good_folder(synthetic_root, name):
    out = run_check(synthetic_root, "DATASETS.NAMES", name)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if line.strip()}
    assert rows["split"] == ["ids", "triplets", "cameras"]
    assert rows["train"][:2] == ["8", "40"] and rows["gallery"][:2] == ["3", "15"]
    assert rows["query"][0] == "3"
    assert "OK" in out.stdout


def test_broken_folder_lists_every_problem(synthetic_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(os.path.join(synthetic_root, "RGBNT201"), root / "RGBNT201")
    train = root / "RGBNT201" / "train_171"
    names = sorted(os.listdir(train / "RGB"))
    os.remove(train / "TI" / names[0])  # missing sibling
    with open(train / "NI" / names[1], "r+b") as f:  # truncated JPEG
        f.truncate(os.path.getsize(train / "NI" / names[1]) // 2)
    for m in ("RGB", "NI", "TI"):  # a name that does not parse
        shutil.copy(train / m / names[2], train / m / "person7.jpg")
    out = run_check(root)
    assert out.returncode == 1
    assert str(train / "TI" / names[0]) in out.stdout and "missing sibling" in out.stdout
    assert str(train / "NI" / names[1]) in out.stdout and "truncated" in out.stdout
    assert str(train / "RGB" / "person7.jpg") in out.stdout and "does not parse" in out.stdout
    assert "3 problem(s)" in out.stdout

    shutil.rmtree(root / "RGBNT201" / "test")  # missing folders name the layout
    out = run_check(root)
    assert out.returncode == 1
    assert str(root / "RGBNT201" / "test" / "RGB") in out.stdout
    assert "expected layout: RGBNT201/{train_171,test}/{RGB,NI,TI}" in out.stdout


def test_missing_dataset_root(tmp_path):
    out = run_check(tmp_path / "nothing", "DATASETS.NAMES", "RGBNT100")
    assert out.returncode == 1 and "missing folder" in out.stdout and "rgbir" in out.stdout


def test_rgbnt100_modes_strips_duplicates_and_one_sided_ids(synthetic_root, tmp_path):
    import numpy as np
    from PIL import Image

    root = tmp_path / "root"
    shutil.copytree(os.path.join(synthetic_root, "RGBNT100"), root / "RGBNT100")
    base = root / "RGBNT100" / "rgbir"
    train = base / "bounding_box_train"
    names = sorted(os.listdir(train))
    narrow = train / names[0]  # a strip cut to 100 px: not three 64-wide parts of a 32-high strip
    with Image.open(narrow) as im:
        im.crop((0, 0, 100, 32)).save(narrow)
    os.remove(train / names[1])  # the same strip as a 16-bit PNG: converted, and said so
    sixteen = train / (names[1][:-4] + ".png")
    Image.fromarray(np.full((32, 192), 40000, np.uint16)).save(sixteen)
    shutil.copy(train / names[2], train / (names[2][:-4] + ".png"))  # a duplicate sample name
    query = sorted(os.listdir(base / "query"))
    ids = sorted({n.split("_")[0] for n in query})
    for n in os.listdir(base / "bounding_box_test"):  # ids[0]: only in query
        if n.startswith(ids[0] + "_"):
            os.remove(base / "bounding_box_test" / n)
    for n in query:  # ids[1]: only in the gallery
        if n.startswith(ids[1] + "_"):
            os.remove(base / "query" / n)
    out = run_check(root, "DATASETS.NAMES", "RGBNT100")
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()

    def line(*words):
        (hit,) = [x for x in lines if all(w in x for w in words)]
        return hit

    assert "192" in line(str(narrow), "100x32", "strip")
    dup = line("duplicate sample name", names[2][:-4])
    assert str(train / names[2]) in dup and str(train / (names[2][:-4] + ".png")) in dup
    assert "2 problem(s)" in out.stdout
    assert str(sixteen) in line("I;16", "1 image")
    assert int(ids[0]) == int(line("only in query").split(":")[-1].strip().split(",")[0])
    assert int(ids[1]) == int(line("only in the gallery").split(":")[-1].strip().split(",")[0])
    assert "no valid gallery match" in line("queries", "no valid gallery match")


def test_msvr310_id_folder_must_match_file_names(synthetic_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(os.path.join(synthetic_root, "MSVR310"), root / "MSVR310")
    train = root / "MSVR310" / "bounding_box_train"
    a, b = sorted(os.listdir(train))[:2]
    name = sorted(os.listdir(train / a / "vis"))[0]
    for m in ("vis", "ni", "th"):  # a sample of id a filed under id b
        shutil.move(str(train / a / m / name), str(train / b / m / name))
    out = run_check(root, "DATASETS.NAMES", "MSVR310")
    assert out.returncode == 1, out.stdout + out.stderr
    (hit,) = [x for x in out.stdout.splitlines() if "id folder" in x]
    assert str(train / b / "vis" / name) in hit and f"id {a}" in hit and str(train / b) in hit
    assert "1 problem(s)" in out.stdout


def test_broken_wmveid863_copy_lists_every_file(synthetic_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(os.path.join(synthetic_root, "WMVEID863"), root / "WMVEID863")
    ident = sorted(os.listdir(root / "WMVEID863" / "test"))[0]
    id_dir = root / "WMVEID863" / "test" / ident
    names = sorted(os.listdir(id_dir / "vis"))
    os.remove(id_dir / "th" / names[0])  # missing th file
    os.rename(id_dir / "th" / names[1], id_dir / "th" / "0001_s001_v1_999.jpg")  # name mismatch
    with open(id_dir / "ni" / names[2], "wb") as f:  # unreadable: not an image at all
        f.write(b"not a jpeg")
    out = run_check(root, "DATASETS.NAMES", "WMVEID863")
    assert out.returncode == 1
    assert "WMVEID863 (scene protocol, 8 cameras)" in out.stdout
    assert f"missing sibling modality file {id_dir / 'th' / names[0]}" in out.stdout
    assert f"missing sibling modality file {id_dir / 'th' / names[1]}" in out.stdout
    assert f"missing sibling modality file {id_dir / 'vis' / '0001_s001_v1_999.jpg'}" in out.stdout
    assert f"unreadable or truncated image {id_dir / 'ni' / names[2]}" in out.stdout
    assert "5 problem(s)" in out.stdout
